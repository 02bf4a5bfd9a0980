//! External data: saving weights to a side file, loading without reading them,
//! reading them on demand, refusing locations that escape the model's folder, and
//! atomic saves.

use oto_onnx::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use oto_onnx::{ExternalDataOptions, Graph, Model, SaveOptions, Tensor};
use prost::Message;
use std::path::{Path, PathBuf};

fn zoo_model(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo").join(format!("{name}.onnx"));
    assert!(path.exists(), "{}: missing; run `make graphs`", path.display());
    path
}

fn external(file_name: &str, threshold: usize) -> SaveOptions {
    SaveOptions { external_data: Some(ExternalDataOptions { file_name: file_name.into(), threshold }) }
}

fn initializers(model: &Model) -> &[TensorProto] {
    &model.proto.graph.as_ref().unwrap().initializer
}

fn entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.as_deref())
}

fn set_entry(t: &mut TensorProto, key: &str, value: &str) {
    match t.external_data.iter_mut().find(|e| e.key.as_deref() == Some(key)) {
        Some(e) => e.value = Some(value.into()),
        None => t.external_data.push(StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }),
    }
}

/// resnet18 saved with every tensor of at least 1 KiB in `model.onnx.data`.
fn save_external(dir: &Path) -> (Model, PathBuf) {
    let original = Model::load(zoo_model("resnet18")).unwrap();
    let path = dir.join("model.onnx");
    original.save(&path, &external("model.onnx.data", 1024)).unwrap();
    (original, path)
}

#[test]
fn external_save_load_and_inline_resave_are_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let (original, path) = save_external(dir.path());
    let side = dir.path().join("model.onnx.data");
    let side_len = std::fs::metadata(&side).unwrap().len();
    let model_len = std::fs::metadata(&path).unwrap().len();
    let original_len = std::fs::metadata(original.path()).unwrap().len();
    assert!(side_len > original_len * 9 / 10, "the side file holds the weights ({side_len} of {original_len} bytes)");
    assert!(model_len < original_len / 10, "the model file no longer holds them ({model_len} bytes)");

    let loaded = Model::load(&path).unwrap();
    let mut external_count = 0;
    for (a, b) in initializers(&original).iter().zip(initializers(&loaded)) {
        assert_eq!(a.name, b.name);
        let big = original.tensor_bytes(a).unwrap().is_some_and(|bytes| bytes.len() >= 1024);
        assert_eq!(b.data_location == Some(DataLocation::External as i32), big, "{:?}", b.name);
        if big {
            external_count += 1;
            assert_eq!(entry(b, "location"), Some("model.onnx.data"));
            let offset: u64 = entry(b, "offset").unwrap().parse().unwrap();
            assert_eq!(offset % 64, 0, "tensors are 64-byte aligned");
        }
        assert_eq!(original.tensor(a).unwrap(), loaded.tensor(b).unwrap(), "{:?}", a.name);
    }
    assert!(external_count > 10);

    // Inline again: the original file, byte for byte.
    let inline = dir.path().join("inline.onnx");
    loaded.save(&inline, &SaveOptions::default()).unwrap();
    assert!(std::fs::read(&inline).unwrap() == std::fs::read(original.path()).unwrap());
    assert!(Model::load(&inline).unwrap().proto == original.proto);

    // External -> external (into another folder) keeps every value.
    let other = tempfile::tempdir().unwrap();
    let again = other.path().join("again.onnx");
    loaded.save(&again, &external("weights.bin", 1024)).unwrap();
    let again = Model::load(&again).unwrap();
    for (a, b) in initializers(&original).iter().zip(initializers(&again)) {
        assert_eq!(original.tensor(a).unwrap(), again.tensor(b).unwrap());
    }
}

#[test]
fn graph_and_shapes_need_no_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (original, path) = save_external(dir.path());
    let side = dir.path().join("model.onnx.data");
    let len = std::fs::metadata(&side).unwrap().len();
    // Same size, but a hole: zeros, no data blocks. Loading and graph building must
    // not care, and reading a weight must now give zeros (it is read on demand).
    std::fs::remove_file(&side).unwrap();
    std::fs::File::create(&side).unwrap().set_len(len).unwrap();

    let model = Model::load(&path).unwrap();
    let graph = Graph::new(&model).unwrap();
    for t in initializers(&model) {
        let init = graph.initializer(t.name.as_deref().unwrap()).unwrap();
        let shape = oto_onnx::tensor::shape_of(init).unwrap();
        let original_t = initializers(&original).iter().find(|o| o.name == t.name).unwrap();
        assert_eq!(shape, oto_onnx::tensor::shape_of(original_t).unwrap());
        let decoded = model.tensor(t).unwrap();
        assert_eq!(decoded.shape, shape);
        if t.data_location == Some(DataLocation::External as i32) {
            assert!(decoded.to_f64_vec().iter().all(|&x| x == 0.0), "{:?} was not read from the side file", t.name);
        }
    }
    oto_onnx::shape::infer(&graph).unwrap();
}

#[test]
fn offsets_beyond_4_gib_work() {
    // Models over 2 GB need external data with 64-bit offsets. A sparse 5 GiB side file
    // costs no disk; the tensor at 4.5 GiB must read back exactly, and loading must not
    // read (or map) the rest.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(zoo_model("mlp")).unwrap();
    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    let t = proto.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.raw_data.as_ref().is_some_and(|r| r.len() >= 16)).unwrap();
    let data = t.raw_data.take().unwrap();
    let offset: u64 = (9 << 30) / 2;
    let side = dir.path().join("huge.bin");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&side).unwrap();
        f.set_len(5 << 30).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&data).unwrap();
    }
    t.data_location = Some(DataLocation::External as i32);
    set_entry(t, "location", "huge.bin");
    set_entry(t, "offset", &offset.to_string());
    set_entry(t, "length", &data.len().to_string());
    let name = t.name.clone();
    let expected =
        Tensor::from_proto(&TensorProto { raw_data: Some(data), external_data: vec![], data_location: None, ..t.clone() }, None).unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();

    let model = Model::load(&path).unwrap();
    Graph::new(&model).unwrap();
    let t = initializers(&model).iter().find(|t| t.name == name).unwrap();
    assert_eq!(model.tensor(t).unwrap(), expected);
}

/// Writes `proto` as `dir/model.onnx` and returns the error of loading it.
fn load_error(dir: &Path, proto: &ModelProto) -> (PathBuf, String) {
    let path = dir.join("model.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    match Model::load(&path) {
        Ok(_) => panic!("{} loaded, but should be refused", path.display()),
        Err(e) => (path, e.to_string()),
    }
}

/// The saved external model's message and the name of its first external initializer.
fn external_proto(path: &Path) -> (ModelProto, usize, String) {
    let proto = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let index =
        proto.graph.as_ref().unwrap().initializer.iter().position(|t| t.data_location == Some(DataLocation::External as i32)).unwrap();
    let name = proto.graph.as_ref().unwrap().initializer[index].name.clone().unwrap();
    (proto, index, name)
}

fn assert_names(message: &str, path: &Path, initializer: &str, what: &str) {
    assert!(message.contains(&path.display().to_string()), "{message:?} does not name the file");
    assert!(message.contains(&format!("'{initializer}'")), "{message:?} does not name the initializer");
    assert!(message.contains(what), "{message:?} does not say {what:?}");
}

#[test]
fn locations_escaping_the_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let (_, path) = save_external(&dir);
    // The same bytes sit outside the folder: a refusal is not a missing file.
    std::fs::copy(dir.join("model.onnx.data"), root.path().join("model.onnx.data")).unwrap();
    let (proto, index, name) = external_proto(&path);
    let edit = |location: &str| {
        let mut p = proto.clone();
        set_entry(&mut p.graph.as_mut().unwrap().initializer[index], "location", location);
        p
    };

    let (file, msg) = load_error(&dir, &edit("../model.onnx.data"));
    assert_names(&msg, &file, &name, "no '..'");
    let (file, msg) = load_error(&dir, &edit("sub/../../model.onnx.data"));
    assert_names(&msg, &file, &name, "no '..'");
    let absolute = root.path().join("model.onnx.data").display().to_string();
    let (file, msg) = load_error(&dir, &edit(&absolute));
    assert_names(&msg, &file, &name, "no absolute path");
    let (file, msg) = load_error(&dir, &edit(""));
    assert_names(&msg, &file, &name, "relative path inside the model's folder");

    // A symbolic link inside the folder that points outside it.
    std::os::unix::fs::symlink(root.path().join("model.onnx.data"), dir.join("link.data")).unwrap();
    let (file, msg) = load_error(&dir, &edit("link.data"));
    assert_names(&msg, &file, &name, "resolves outside the model's folder");
    // A link that stays inside is fine.
    std::os::unix::fs::symlink(dir.join("model.onnx.data"), dir.join("inside.data")).unwrap();
    let p = edit("inside.data");
    std::fs::write(&path, p.encode_to_vec()).unwrap();
    Model::load(&path).unwrap();

    // A missing file and a folder.
    let (file, msg) = load_error(&dir, &edit("missing.data"));
    assert_names(&msg, &file, &name, "cannot be opened");
    std::fs::create_dir(dir.join("folder.data")).unwrap();
    let (file, msg) = load_error(&dir, &edit("folder.data"));
    assert_names(&msg, &file, &name, "not a regular file");
}

#[test]
fn ranges_and_lengths_are_checked_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = save_external(dir.path());
    let side_len = std::fs::metadata(dir.path().join("model.onnx.data")).unwrap().len();
    let (proto, index, name) = external_proto(&path);
    let edit = |key: &str, value: &str| {
        let mut p = proto.clone();
        set_entry(&mut p.graph.as_mut().unwrap().initializer[index], key, value);
        p
    };
    let length: u64 = entry(&proto.graph.as_ref().unwrap().initializer[index], "length").unwrap().parse().unwrap();

    let (file, msg) = load_error(dir.path(), &edit("offset", &(side_len - length + 4).to_string()));
    assert_names(&msg, &file, &name, "beyond the end");
    let (file, msg) = load_error(dir.path(), &edit("offset", &u64::MAX.to_string()));
    assert_names(&msg, &file, &name, "beyond the end");
    let (file, msg) = load_error(dir.path(), &edit("length", &(side_len + 1).to_string()));
    assert_names(&msg, &file, &name, "beyond the end");
    // Inside the file, but not the size the shape needs.
    let (file, msg) = load_error(dir.path(), &edit("length", &(length - 4).to_string()));
    assert_names(&msg, &file, &name, &format!("holds {} bytes", length - 4));
    let (file, msg) = load_error(dir.path(), &edit("offset", "-8"));
    assert_names(&msg, &file, &name, "not a number");
    let mut p = proto.clone();
    p.graph.as_mut().unwrap().initializer[index].external_data.retain(|e| e.key.as_deref() != Some("location"));
    let (file, msg) = load_error(dir.path(), &p);
    assert_names(&msg, &file, &name, "without a 'location'");

    // From memory there is no folder to read from.
    let err = Model::from_bytes(proto.encode_to_vec(), "in-memory.onnx").unwrap_err().to_string();
    assert!(err.contains("in-memory.onnx") && err.contains(&name) && err.contains("not loaded from a file"), "{err}");
}

#[test]
fn saves_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(zoo_model("mlp")).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };

    // Into a folder that does not exist: an error naming the path, nothing written.
    let missing = dir.path().join("no/such/folder/model.onnx");
    let err = model.save(&missing, &SaveOptions::default()).unwrap_err().to_string();
    assert!(err.contains("no/such/folder"), "{err}");
    let err = model.save(&missing, &external("model.onnx.data", 0)).unwrap_err().to_string();
    assert!(err.contains("no/such/folder"), "{err}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    // A failure after the temporary files exist (the side file's name is taken by a
    // folder, so renaming onto it fails): an error, no temporary file left behind.
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep"), b"x").unwrap();
    let err = model.save(dir.path().join("model.onnx"), &external("taken", 0)).unwrap_err().to_string();
    assert!(err.contains("taken"), "{err}");
    assert_eq!(listing(dir.path()), vec!["taken"]);

    // Side file names that would be written outside the model's folder are refused.
    for bad in ["../escape.data", "/tmp/escape.data", "sub/w.data", ""] {
        let err = model.save(dir.path().join("model.onnx"), &external(bad, 0)).unwrap_err().to_string();
        assert!(err.contains("plain file name"), "{bad}: {err}");
    }
    assert_eq!(listing(dir.path()), vec!["taken"]);

    // Overwriting an existing model (even the one being read from) leaves a valid file.
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, b"an old, broken model").unwrap();
    model.save(&path, &SaveOptions::default()).unwrap();
    let reloaded = Model::load(&path).unwrap();
    assert!(reloaded.proto == model.proto);
    reloaded.save(&path, &external("model.onnx.data", 256)).unwrap();
    let external_model = Model::load(&path).unwrap();
    external_model.save(&path, &external("model.onnx.data", 128)).unwrap();
    let again = Model::load(&path).unwrap();
    for (a, b) in initializers(&model).iter().zip(initializers(&again)) {
        assert_eq!(model.tensor(a).unwrap(), again.tensor(b).unwrap());
    }
    assert_eq!(listing(dir.path()), vec!["model.onnx", "model.onnx.data", "taken"]);
}
