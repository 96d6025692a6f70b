//! The configuration loader against arbitrary values: any leaf of `backfill_config.json` or
//! `tenants.json` replaced by a value of any JSON type or size loads, or is refused with an
//! error that names the file; it never panics.

mod common;

use avesa_console::config::Config;
use common::*;
use proptest::prelude::*;
use serde_json::Value;

/// Every leaf of `v` as a JSON pointer.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        "\\PC{0,12}".prop_map(Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"unexpected": [1, "two"]})),
    ]
}

fn mutated_config_loads_or_names_the_file(file: &str, pick: usize, value: Value) {
    let fx = Fixture::new();
    let path = fx.config_dir().join(file);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut all = Vec::new();
    leaves(&doc, String::new(), &mut all);
    let pointer = &all[pick % all.len()];
    *doc.pointer_mut(pointer).unwrap() = value.clone();
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    if let Err(e) = Config::load(&fx.config_dir()) {
        let message = e.to_string();
        assert!(
            message.contains(file),
            "{file} {pointer} = {value}: the error does not name the file: {message}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_value_in_the_backfill_settings_loads_or_names_the_file(pick in any::<usize>(), value in any_value()) {
        mutated_config_loads_or_names_the_file("backfill_config.json", pick, value);
    }

    #[test]
    fn any_value_in_the_tenants_registry_loads_or_names_the_file(pick in any::<usize>(), value in any_value()) {
        mutated_config_loads_or_names_the_file("tenants.json", pick, value);
    }
}
