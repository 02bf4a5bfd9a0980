"""Hugging Face Optimum exports, as users make them: tiny random-weight transformers saved
with save_pretrained (each with a tokenizer.json or an image preprocessor config beside it),
then exported with `optimum.exporters.onnx.main_export` (what `optimum-cli export onnx`
runs) with its defaults. No cleanup of ours: oto must take these files as they are.

Runs in the overlay venv made by the Makefile (.venv-optimum: optimum-onnx pins
transformers < 4.58, the main venv has 5.x; everything else comes from the main venv).

Merged decoders (MERGED, `export_merged`): optimum's older layout of a decoder with its
cache, one `If` on `use_cache_branch` holding the model with and without it; listed under
"merged" in index.json, with reference inputs for each branch.

Output, per model NAME: OUT/NAME/model.onnx (Optimum's file name), the saved model's
config and tokenizer files, and OUT/NAME/inputs.npz / outputs.npz (batch 2, onnxruntime
outputs checked against PyTorch), plus OUT/index.json. Models with a tokenizer also get
OUT/NAME/tokens_ref.json: TOKEN_LINES tokenized by transformers (padding and truncation to
SEQ), the reference for oto's own tokenization of raw text (`--token-references` writes
only these, into an existing OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zlib

import numpy as np
import torch

BATCH = 2
SEQ = 16
VOCAB = 1000
# Positions already in the key/value cache of the `-with-past` exports' reference inputs:
# not zero, so the checks see the past read (and kept) where heads are removed.
PAST = 3


def _word_piece_tokenizer(path: str) -> None:
    """A tiny WordPiece tokenizer (BERT style) over VOCAB entries, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = [a + b for a in letters for b in letters]
    pieces = ["##" + a for a in letters]
    vocab = specials + letters + pieces + words
    vocab = vocab[:VOCAB] + [f"[unused{i}]" for i in range(VOCAB - len(vocab[:VOCAB]))]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(path)


def _save_tokenizer(model_dir: str, kind: str) -> None:
    from transformers import PreTrainedTokenizerFast

    raw = os.path.join(model_dir, "tokenizer.json")
    _word_piece_tokenizer(raw)
    if kind == "bert":
        fast = PreTrainedTokenizerFast(tokenizer_file=raw, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        fast = PreTrainedTokenizerFast(tokenizer_file=raw, unk_token="[UNK]", pad_token="[PAD]",
                                       bos_token="[CLS]", eos_token="[SEP]")
    fast.model_max_length = 64
    fast.save_pretrained(model_dir)


# Lines for the tokenization reference: case, accents, punctuation, digits, CJK, unknown
# characters, blank-adjacent spaces, and lines longer than SEQ tokens (truncated).
TOKEN_LINES = [
    "hello world",
    "The Quick brown fox, jumps over the lazy dog!",
    "Café déjà vu: naïve résumé",
    "numbers 12345 and 3.14159 and 1,000",
    "  leading and trailing spaces  ",
    "中文 mixed with ascii",
    "emoji 🙂 and symbols #@$%^&*()",
    "a very long line with many many words that will certainly be truncated to the maximum length of sixteen",
    "x",
    "UPPER lower MiXeD",
]


def write_token_reference(target: str) -> None:
    """OUT/NAME/tokens_ref.json: TOKEN_LINES through the saved tokenizer (transformers),
    padded and truncated to SEQ tokens, with the mask and token types."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    enc = tok(TOKEN_LINES, padding="max_length", truncation=True, max_length=SEQ)
    ref = {"max_length": SEQ, "lines": TOKEN_LINES}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in enc:
            ref[key] = [list(map(int, row)) for row in enc[key]]
    with open(os.path.join(target, "tokens_ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False)
        f.write("\n")


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=64, num_labels=4)
    return BertForSequenceClassification(cfg), "text-classification", "bert"


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=VOCAB, dim=128, n_layers=2, n_heads=2, hidden_dim=512,
                           max_position_embeddings=64, num_labels=4)
    return DistilBertForSequenceClassification(cfg), "text-classification", "bert"


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=2, n_positions=64,
                     bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPT2LMHeadModel(cfg), "text-generation", "gpt"


def _decoder(config: str, model: str, **sizes):
    """A LLaMA-like decoder of transformers' classes `config` and `model`: 2 layers of
    width 128 (MLP 256) and 4 query heads; `sizes` gives the K/V heads and the rest."""
    import transformers

    cfg = getattr(transformers, config)(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=64,
                                        bos_token_id=2, eos_token_id=3, pad_token_id=0, **sizes)
    return getattr(transformers, model)(cfg), "text-generation", "gpt"


def _llama():
    # Grouped-query attention: 4 query heads share 2 key/value heads.
    return _decoder("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2)


def _llama_past():
    # The default export of a causal LM (`optimum-cli export onnx --model M` infers the task
    # text-generation-with-past): past_key_values.N.key/value inputs, present.N.* outputs.
    model, _, kind = _llama()
    return model, "text-generation-with-past", kind


def _gpt2_past():
    model, _, kind = _gpt2()
    return model, "text-generation-with-past", kind


def _gptj_past():
    # GPT-J returns its key cache through `.to(dtype)`: a Cast to the type it has.
    model, _, kind = _gptj()
    return model, "text-generation-with-past", kind


def _llama_mqa():
    # Multi-query attention (Gemma-2B's layout): 4 query heads read one key/value head,
    # repeated by repeat_kv.
    return _decoder("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=1)


def _qwen3():
    # Grouped-query attention whose queries and keys are RMS-normalized per head (q_norm,
    # k_norm over the head dim) before rotary embeddings.
    return _decoder("Qwen3Config", "Qwen3ForCausalLM", num_key_value_heads=2, head_dim=32)


def _cohere():
    # Command-R's layout: rotary embeddings on interleaved pairs built with
    # repeat_interleave (a NonZero mask in the export), attention and MLP in parallel.
    return _decoder("CohereConfig", "CohereForCausalLM", num_key_value_heads=2)


def _qwen3_moe():
    # A mixture of experts in every layer: a router picks 2 of 4 SwiGLU experts per token
    # (TopK, OneHot and NonZero in the export), each expert's tokens gathered, and the
    # weighted outputs scattered back (ScatterElements).
    return _decoder("Qwen3MoeConfig", "Qwen3MoeForCausalLM", num_key_value_heads=2, num_experts=4,
                    num_experts_per_tok=2, moe_intermediate_size=64, decoder_sparse_step=1)


def _gpt_bigcode():
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    # SantaCoder/StarCoder's layout: multi-query attention from one fused c_attn
    # projection, [q (4 heads) | k | v (one head each)].
    cfg = GPTBigCodeConfig(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=4, n_positions=64, multi_query=True,
                           bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPTBigCodeForCausalLM(cfg), "text-generation", "gpt"


def _gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    # Pythia's layout: one query_key_value projection whose columns are per head
    # [q | k | v], rotary embeddings on a quarter of each head (Pythia's rotary_pct).
    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=64, rotary_pct=0.25,
                        bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPTNeoXForCausalLM(cfg), "text-generation", "gpt"


def _gptj():
    from transformers import GPTJConfig, GPTJForCausalLM

    # Rotary embeddings on the first 8 dims of each head, rotated by interleaved pairs
    # (rotate_every_two) with sin/cos gathered from a table.
    cfg = GPTJConfig(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
                     bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPTJForCausalLM(cfg), "text-generation", "gpt"


def _deberta():
    from transformers import DebertaConfig, DebertaForSequenceClassification

    # DeBERTa (v1)'s disentangled attention: relative-position terms from helpers that
    # transformers scripts, whose `if` on sizes the exporter keeps as If nodes.
    cfg = DebertaConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=64, relative_attention=True,
                        pos_att_type=["c2p", "p2c"], max_relative_positions=16, num_labels=4)
    return DebertaForSequenceClassification(cfg), "text-classification", "bert"


def _roformer():
    from transformers import RoFormerConfig, RoFormerForMaskedLM

    # Rotary embeddings from a sinusoidal table stored as a weight, stacked as pairs.
    cfg = RoFormerConfig(vocab_size=VOCAB, hidden_size=128, embedding_size=128, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=256, max_position_embeddings=64)
    return RoFormerForMaskedLM(cfg), "fill-mask", "bert"


def _vit():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=128, num_labels=10)
    return ViTForImageClassification(cfg), "image-classification", "image"


def _swin():
    from transformers import SwinConfig, SwinForImageClassification

    # Two stages of two blocks (the second of each shifts its windows), windows of 4 over
    # a 16x16 then 8x8 map; the export pads to a multiple of the window with pads computed
    # from the image size.
    cfg = SwinConfig(image_size=32, patch_size=2, num_channels=3, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                     window_size=4, mlp_ratio=4.0, num_labels=10)
    return SwinForImageClassification(cfg), "image-classification", "image"


MODELS = {"bert": _bert, "distilbert": _distilbert, "gpt2": _gpt2, "llama_gqa": _llama, "llama_mqa": _llama_mqa,
          "qwen3": _qwen3, "cohere": _cohere, "qwen3_moe": _qwen3_moe, "gpt_bigcode": _gpt_bigcode,
          "gpt_neox": _gpt_neox, "gptj": _gptj, "deberta": _deberta, "roformer": _roformer, "vit": _vit, "swin": _swin,
          "llama_past": _llama_past, "gpt2_past": _gpt2_past, "gptj_past": _gptj_past}


# Biases that stay equal (zeros) so that the exported file ties them through Identity.
KEEP_EQUAL = {"bert.pooler.dense.bias", "bert.encoder.layer.0.output.dense.bias"}


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial norm parameters and biases (fresh models have ones and zeros)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name in KEEP_EQUAL:
            # Left at their initial zeros: the exporter de-duplicates equal initializers into
            # one, reached through Identity, as it does for users' freshly added heads.
            continue
        if p.dim() == 1:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name.lower() else 0.0))


def _inputs(onnx_path: str, seed: int) -> dict[str, np.ndarray]:
    import onnx

    rng = np.random.default_rng(seed)
    model = onnx.load(onnx_path, load_external_data=False)
    past = PAST if any(vi.name.startswith("past_key_values.") for vi in model.graph.input) else 0
    feeds = {}
    for vi in model.graph.input:
        name = vi.name
        if name in ("input_ids",):
            feeds[name] = rng.integers(5, VOCAB, size=(BATCH, SEQ), dtype=np.int64)
        elif name == "attention_mask":
            mask = np.ones((BATCH, past + SEQ), dtype=np.int64)
            mask[1, past + SEQ - 4:] = 0  # one padded sequence
            feeds[name] = mask
        elif name == "token_type_ids":
            feeds[name] = np.zeros((BATCH, SEQ), dtype=np.int64)
        elif name == "position_ids":
            feeds[name] = np.tile(np.arange(past, past + SEQ, dtype=np.int64), (BATCH, 1))
        elif name.startswith("past_key_values."):
            # [batch, key/value heads, past, head dim] as the file declares them.
            _, heads, _, dim = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            feeds[name] = rng.standard_normal((BATCH, heads, past, dim)).astype(np.float32)
        elif name == "use_cache_branch":
            # A merged decoder (see export_merged): the branch that reads the cache.
            feeds[name] = np.array([True])
        elif name == "pixel_values":
            feeds[name] = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
        else:
            raise SystemExit(f"{onnx_path}: unexpected input {name}")
    return feeds


def export(name: str, out_dir: str) -> dict:
    from optimum.exporters.onnx import main_export

    t0 = time.time()
    seed = zlib.crc32(name.encode()) % (2**31)
    torch.manual_seed(seed)
    model, task, kind = MODELS[name]()
    _randomize(model, seed)
    model.eval()
    target = os.path.join(out_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved)
        if kind == "image":
            from transformers import ViTImageProcessor

            ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(saved)
        else:
            _save_tokenizer(saved, kind)
        # What `optimum-cli export onnx --model SAVED --task TASK TARGET` runs, defaults otherwise.
        main_export(saved, target, task=task, library_name="transformers", do_validation=True)
    path = os.path.join(target, "model.onnx")

    import onnxruntime as ort

    feeds = _inputs(path, seed)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    args = {k: torch.from_numpy(v) for k, v in feeds.items() if not k.startswith("past_key_values.")}
    layers = sorted({int(k.split(".")[1]) for k in feeds if k.startswith("past_key_values.")})
    if layers:
        from transformers import DynamicCache

        args["past_key_values"] = DynamicCache.from_legacy_cache(tuple(
            (torch.from_numpy(feeds[f"past_key_values.{i}.key"]), torch.from_numpy(feeds[f"past_key_values.{i}.value"]))
            for i in layers))
    with torch.no_grad():
        ref = model(**args)
    ref_logits = ref.logits.numpy()
    got = outs[names.index("logits")]
    err = float(np.max(np.abs(ref_logits - got)))
    if err > 1e-4 * max(1.0, float(np.max(np.abs(ref_logits)))):
        raise SystemExit(f"{name}: onnxruntime differs from PyTorch by {err}")
    np.savez(os.path.join(target, "inputs.npz"), **feeds)
    np.savez(os.path.join(target, "outputs.npz"), **dict(zip(names, outs)))
    if kind != "image":
        write_token_reference(target)
    print(f"[{name}] {time.time() - t0:.1f}s task={task} logits max|diff|={err:.2e}", flush=True)
    return {"name": name, "task": task, "inputs": list(feeds), "outputs": names,
            "params": int(sum(p.numel() for p in model.parameters()))}


def _whisper():
    # Optimum's default layout for speech recognition with the cache: encoder_model.onnx and
    # decoder_model_merged.onnx (the merged decoder is the one kept, see export_merged).
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=VOCAB, num_mel_bins=80, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128,
                        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=2, pad_token_id=0,
                        bos_token_id=2, eos_token_id=3, begin_suppress_tokens=None, suppress_tokens=None)
    return WhisperForConditionalGeneration(cfg), "automatic-speech-recognition-with-past", "gpt"


def _bart():
    # optimum's default layout for text-to-text generation with the cache: a merged decoder
    # whose cache branch reads the encoder's keys and values from graph inputs, the keys
    # also through Shape (the length of the encoder's mask).
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                     pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)
    return BartForConditionalGeneration(cfg), "text2text-generation-with-past", "gpt"


def _t5():
    # T5's relative-position bias: a table of buckets per head, looked up once and added to
    # every layer's scores (the cross-attention's: zeros of [1, heads, q, k]).
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(cfg), "text2text-generation-with-past", "gpt"


# Merged decoders (export_merged): name -> the architecture it exports.
MERGED = {"gpt2_merged": "gpt2", "whisper_merged": "whisper", "bart_merged": "bart", "t5_merged": "t5"}
SEQ2SEQ = {"whisper": _whisper, "bart": _bart, "t5": _t5}


def _check_logits(name: str, model, feeds: dict, logits: np.ndarray) -> float:
    """Max |PyTorch - onnxruntime| of the logits on `feeds` (the cache, when given, as
    transformers takes it); exits when over the tolerance."""
    args = {k: torch.from_numpy(v) for k, v in feeds.items() if not k.startswith("past_key_values.") and k != "use_cache_branch"}
    layers = sorted({int(k.split(".")[1]) for k in feeds if k.startswith("past_key_values.")})
    if layers and feeds.get("use_cache_branch", np.array([True]))[0]:
        from transformers import DynamicCache

        args["past_key_values"] = DynamicCache.from_legacy_cache(tuple(
            (torch.from_numpy(feeds[f"past_key_values.{i}.key"]), torch.from_numpy(feeds[f"past_key_values.{i}.value"]))
            for i in layers))
    with torch.no_grad():
        ref = model(**args).logits.numpy()
    err = float(np.max(np.abs(ref - logits)))
    if err > 1e-4 * max(1.0, float(np.max(np.abs(ref)))):
        raise SystemExit(f"{name}: onnxruntime differs from PyTorch by {err}")
    return err


def export_merged(name: str, out_dir: str) -> dict:
    """A decoder with its key/value cache as optimum <= 1.13 exported it (and still exports
    sequence-to-sequence models: see _export_merged_whisper), and as
    transformers.js models still ship it (`decoder_model_merged.onnx`): optimum's
    `export_models` writes the decoder without cache inputs and the one with them, and
    `optimum.onnx.merge_decoders` merges the two into one file, an `If` on the input
    `use_cache_branch` holding both (OUT/NAME/model.onnx). Reference inputs for each
    branch: inputs.npz (use_cache_branch true, PAST positions cached) and inputs_first.npz
    (false: the first pass, with a cache of length 1 that this branch does not read), with
    onnxruntime's outputs (outputs.npz, outputs_first.npz), the logits of both checked
    against PyTorch."""
    from pathlib import Path

    import onnxruntime as ort
    from optimum.exporters.onnx.convert import export_models
    from optimum.exporters.onnx.model_configs import GPT2OnnxConfig
    from optimum.onnx import merge_decoders

    t0 = time.time()
    seed = zlib.crc32(name.encode()) % (2**31)
    torch.manual_seed(seed)
    if MERGED[name] in SEQ2SEQ:
        return _export_merged_seq2seq(name, out_dir, seed, t0)
    model, _, kind = MODELS[MERGED[name]]()
    _randomize(model, seed)
    model.eval()
    target = os.path.join(out_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    path = os.path.join(target, "model.onnx")
    first = GPT2OnnxConfig(model.config, task="text-generation", use_past=True, use_past_in_inputs=False)
    later = GPT2OnnxConfig(model.config, task="text-generation", use_past=True, use_past_in_inputs=True)
    with tempfile.TemporaryDirectory() as parts:
        export_models({"decoder_model": (model, first), "decoder_with_past_model": (model, later)}, Path(parts),
                      output_names=["decoder_model.onnx", "decoder_with_past_model.onnx"])
        merge_decoders(decoder=os.path.join(parts, "decoder_model.onnx"),
                       decoder_with_past=os.path.join(parts, "decoder_with_past_model.onnx"), save_path=path, strict=False)
    model.config.save_pretrained(target)
    _save_tokenizer(target, kind)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    later_feeds = _inputs(path, seed)
    first_feeds = {k: v for k, v in later_feeds.items()}
    first_feeds["use_cache_branch"] = np.array([False])
    first_feeds["attention_mask"] = later_feeds["attention_mask"][:, PAST:]
    first_feeds["position_ids"] = np.tile(np.arange(SEQ, dtype=np.int64), (BATCH, 1))
    for k, v in later_feeds.items():
        if k.startswith("past_key_values."):
            first_feeds[k] = v[:, :, :1]
    errs = []
    for feeds, suffix in ((later_feeds, ""), (first_feeds, "_first")):
        outs = sess.run(None, feeds)
        errs.append(_check_logits(name, model, feeds, outs[names.index("logits")]))
        np.savez(os.path.join(target, f"inputs{suffix}.npz"), **feeds)
        np.savez(os.path.join(target, f"outputs{suffix}.npz"), **dict(zip(names, outs)))
    print(f"[{name}] {time.time() - t0:.1f}s merged decoder, logits max|diff|={max(errs):.2e}", flush=True)
    return {"name": name, "task": "text-generation-with-past (merged)", "inputs": list(later_feeds), "outputs": names,
            "params": int(sum(p.numel() for p in model.parameters()))}


def _export_merged_seq2seq(name: str, out_dir: str, seed: int, t0: float) -> dict:
    """An encoder-decoder exported as `optimum-cli export onnx --task ...-with-past` does
    (main_export, validated against PyTorch by optimum): its decoder_model_merged.onnx
    becomes OUT/NAME/model.onnx (the encoder and the unmerged decoders are dropped). Reference
    inputs for each branch as export_merged's, with encoder_hidden_states for the first pass
    and the encoder's keys and values in the cache; outputs from onnxruntime."""
    import onnxruntime as ort
    from optimum.exporters.onnx import main_export
    from transformers import WhisperFeatureExtractor

    model, task, kind = SEQ2SEQ[MERGED[name]]()
    _randomize(model, seed)
    model.eval()
    target = os.path.join(out_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as saved, tempfile.TemporaryDirectory() as exported:
        model.save_pretrained(saved)
        if MERGED[name] == "whisper":
            WhisperFeatureExtractor(feature_size=80).save_pretrained(saved)
        _save_tokenizer(saved, kind)
        main_export(saved, exported, task=task, library_name="transformers", do_validation=True)
        os.makedirs(target)
        shutil.copy(os.path.join(exported, "decoder_model_merged.onnx"), os.path.join(target, "model.onnx"))
        for f in os.listdir(exported):
            if not f.endswith(".onnx"):
                shutil.copy(os.path.join(exported, f), target)
    path = os.path.join(target, "model.onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(seed)
    # The decoder reads encoder states of any length: 16 (Whisper's encoder gives 1500).
    enc = 16
    ids = rng.integers(5, VOCAB, size=(BATCH, SEQ), dtype=np.int64)
    declared = {vi.name: vi.shape for vi in sess.get_inputs()}
    states = rng.standard_normal((BATCH, enc, declared["encoder_hidden_states"][2])).astype(np.float32)
    feeds = {}
    for vi in sess.get_inputs():
        n = vi.name
        heads, dim = (vi.shape[1], vi.shape[3]) if n.startswith("past_key_values.") else (0, 0)
        if n == "input_ids":
            feeds[n] = ids
        elif n == "encoder_hidden_states":
            feeds[n] = states
        elif n == "encoder_attention_mask":
            mask = np.ones((BATCH, enc), dtype=np.int64)
            mask[1, enc - 4:] = 0  # one padded source sequence
            feeds[n] = mask
        elif n == "use_cache_branch":
            feeds[n] = np.array([True])
        elif n.startswith("past_key_values.") and ".decoder." in n:
            feeds[n] = rng.standard_normal((BATCH, heads, PAST, dim)).astype(np.float32)
        elif n.startswith("past_key_values.") and ".encoder." in n:
            feeds[n] = rng.standard_normal((BATCH, heads, enc, dim)).astype(np.float32)
        else:
            raise SystemExit(f"{path}: unexpected input {n}")
    first = dict(feeds)
    first["use_cache_branch"] = np.array([False])
    for k in feeds:
        if k.startswith("past_key_values."):
            first[k] = feeds[k][:, :, :1]
    for f, suffix in ((feeds, ""), (first, "_first")):
        outs = sess.run(None, f)
        np.savez(os.path.join(target, f"inputs{suffix}.npz"), **f)
        np.savez(os.path.join(target, f"outputs{suffix}.npz"), **dict(zip(names, outs)))
    print(f"[{name}] {time.time() - t0:.1f}s merged decoder (optimum's validation)", flush=True)
    decoder = model.get_decoder()
    return {"name": name, "task": task + " (merged decoder)", "inputs": list(feeds), "outputs": names,
            "params": int(sum(p.numel() for p in decoder.parameters()))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS))
    ap.add_argument("--token-references", action="store_true",
                    help="only write tokens_ref.json beside the tokenizers already in OUT")
    args = ap.parse_args(argv)
    if args.token_references:
        for name in args.only or MODELS:
            if os.path.exists(os.path.join(args.out, name, "tokenizer.json")):
                write_token_reference(os.path.join(args.out, name))
        return 0
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    entries = [export(n, args.out) for n in (args.only or MODELS)]
    merged = [export_merged(n, args.out) for n in MERGED] if not args.only else []
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"models": entries, "merged": merged}, f, indent=1)
        f.write("\n")
    print(f"total {time.time() - t0:.1f}s, {len(entries)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
