//! The pipeline.toml reference, generated from the config structs: their JSON Schema
//! (schemars, descriptions from the doc comments) for keys, types and meanings, and the
//! defaults from deserialising a file that sets nothing but the name.
//! `lookout config-reference` prints it; `docs/config-reference.md` is its output,
//! checked by a test.

use serde_json::Value;

use super::PipelineToml;

/// One key of the reference.
struct Row {
    key: String,
    kind: String,
    default: String,
    meaning: String,
}

/// The reference as a Markdown table.
pub fn markdown() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(PipelineToml)).expect("a schema serialises");
    let defaults: PipelineToml = toml::from_str("name = \"NAME\"").expect("only the name is required");
    let defaults = serde_json::to_value(defaults).expect("the config serialises");
    let mut rows = Vec::new();
    walk(&schema, &schema, "", Some(&defaults), &mut rows);
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key,
            r.kind,
            r.default,
            r.meaning.replace('\n', " ").replace('|', "\\|")
        ));
    }
    out
}

/// The schema a `$ref` points at, or the node itself.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
            .unwrap_or(node),
        None => node,
    }
}

/// An `Option<T>` is `anyOf: [T, null]`: T.
fn unwrap_option<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let node = resolve(root, node);
    match node.get("anyOf").and_then(Value::as_array) {
        Some(alts) => alts
            .iter()
            .find(|a| a.get("type") != Some(&Value::from("null")))
            .map_or(node, |a| resolve(root, a)),
        None => node,
    }
}

fn walk(root: &Value, node: &Value, prefix: &str, defaults: Option<&Value>, rows: &mut Vec<Row>) {
    let node = resolve(root, node);
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, prop) in props {
        let path = format!("{prefix}{key}");
        let target = unwrap_option(root, prop);
        let default = defaults.and_then(|d| d.get(key));
        if target.get("properties").is_some() {
            walk(root, target, &format!("{path}."), default, rows);
            continue;
        }
        if let Some(items) = target.get("items") {
            let item = resolve(root, items);
            if item.get("properties").is_some() {
                walk(root, item, &format!("[[{path}]] "), None, rows);
                continue;
            }
        }
        let meaning = prop
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        rows.push(Row {
            key: path,
            kind: kind(root, target),
            default: match default {
                // the name is set to build the defaults, but must be written
                _ if prefix.is_empty() && required.contains(&key.as_str()) => "required".into(),
                Some(d) => show(d),
                None if required.contains(&key.as_str()) => "required".into(),
                None => "—".into(),
            },
            meaning,
        });
    }
}

/// The value's type in words: an enum's values, or the JSON type.
fn kind(root: &Value, node: &Value) -> String {
    let node = resolve(root, node);
    let mut values: Vec<String> = Vec::new();
    if let Some(e) = node.get("enum").and_then(Value::as_array) {
        values.extend(e.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")));
    }
    for alt in ["oneOf", "anyOf"] {
        for a in node.get(alt).and_then(Value::as_array).into_iter().flatten() {
            let a = resolve(root, a);
            if let Some(c) = a.get("const").and_then(Value::as_str) {
                values.push(format!("`{c}`"));
            }
            if let Some(e) = a.get("enum").and_then(Value::as_array) {
                values.extend(e.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")));
            }
        }
    }
    if !values.is_empty() {
        return values.join(", ");
    }
    let t = match &node["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "value".into(),
    };
    if t == "array" {
        format!("list of {}", kind(root, &node["items"]))
    } else {
        t
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => format!("`\"{s}\"`"),
        other => format!("`{other}`"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_has_a_type_and_a_meaning() {
        let md = super::markdown();
        for key in [
            "`name`",
            "`batch.max_records`",
            "`[[detect]] metric`",
            "`windows.idle_s`",
            "`sources.logs.encoding`",
        ] {
            assert!(md.contains(key), "{key} missing:\n{md}");
        }
        assert!(md.contains("`8192`"), "batch.max_records' default:\n{md}");
        for line in md.lines().skip(2) {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert!(
                cells.len() == 4 && !cells[3].trim_end_matches(" |").trim().is_empty(),
                "no meaning: {line}"
            );
        }
    }
}
