//! Mutations of saved analyses (`oto analyze --json`): hostile numbers, names and
//! structures in the JSON tree, or text damage.

use crate::Rng;
use serde_json::Value;

/// Numbers a saved analysis never holds: zero, negative, fractional, huge, past u64.
const HOSTILE_NUMBERS: [&str; 12] = [
    "0",
    "1",
    "-1",
    "2",
    "0.5",
    "1e300",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "65536",
];

/// The text of a mutated copy of `json`.
pub fn mutate(rng: &mut Rng, json: &Value) -> String {
    let mut v = json.clone();
    let mut strings = Vec::new();
    collect_strings(&v, &mut strings);
    for _ in 0..=rng.below(3) {
        let mut count = 0;
        count_nodes(&v, &mut count);
        let target = rng.below(count);
        let mut seen = 0;
        mutate_node(rng, &mut v, target, &mut seen, &strings);
    }
    let mut text = v.to_string();
    if rng.chance(10) {
        // Text damage: a cut, a flipped byte, an inserted brace.
        let bytes = damage_text(rng, text.into_bytes());
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

fn damage_text(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    let len = bytes.len();
    match rng.below(3) {
        0 => bytes.truncate(rng.below(len + 1)),
        1 if len > 0 => {
            let i = rng.below(len);
            bytes[i] = b"{}[],:\"0-9e"[rng.below(11)];
        }
        _ => {
            let at = rng.below(len + 1);
            bytes.insert(at, b"{[\""[rng.below(3)]);
        }
    }
    bytes
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn count_nodes(v: &Value, n: &mut usize) {
    *n += 1;
    match v {
        Value::Array(a) => a.iter().for_each(|x| count_nodes(x, n)),
        Value::Object(o) => o.values().for_each(|x| count_nodes(x, n)),
        _ => {}
    }
}

/// Mutates the `target`-th node of `v` in pre-order.
fn mutate_node(rng: &mut Rng, v: &mut Value, target: usize, seen: &mut usize, strings: &[String]) -> bool {
    if *seen == target {
        mutate_here(rng, v, strings);
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| mutate_node(rng, x, target, seen, strings)),
        Value::Object(o) => o.values_mut().any(|x| mutate_node(rng, x, target, seen, strings)),
        _ => false,
    }
}

fn hostile_number(rng: &mut Rng) -> Value {
    let text = HOSTILE_NUMBERS[rng.below(HOSTILE_NUMBERS.len())];
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn mutate_here(rng: &mut Rng, v: &mut Value, strings: &[String]) {
    match v {
        Value::Number(n) => {
            *v = if rng.chance(70) {
                hostile_number(rng)
            } else {
                let k = n.as_u64().unwrap_or(0);
                Value::from(k.saturating_add(1 + rng.below(3) as u64).saturating_sub(rng.below(3) as u64 * 2))
            }
        }
        Value::String(_) => {
            *v = match rng.below(4) {
                0 => Value::String(String::new()),
                1 => Value::String("no_such_name".into()),
                2 => hostile_number(rng),
                _ => Value::String(rng.pick(strings).cloned().unwrap_or_default()),
            }
        }
        Value::Array(a) => match rng.below(4) {
            0 => a.clear(),
            1 if !a.is_empty() => {
                let i = rng.below(a.len());
                let x = a[i].clone();
                a.push(x);
            }
            2 if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            _ => a.push(hostile_number(rng)),
        },
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            match rng.below(3) {
                0 if !keys.is_empty() => {
                    o.remove(&keys[rng.below(keys.len())]);
                }
                1 if !keys.is_empty() => {
                    o.insert(keys[rng.below(keys.len())].clone(), Value::Null);
                }
                _ => {
                    o.insert("unexpected".into(), Value::from(1));
                }
            }
        }
        Value::Bool(b) => *b = !*b,
        Value::Null => *v = hostile_number(rng),
    }
}
