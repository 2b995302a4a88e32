//! `ferry components`: what pipeline files can use, with every option.

use ferry_core::registry::{ComponentInfo, ComponentKind};
use serde_json::Value;

/// List every source, transform, sink and format, with a description and the options of
/// each (from their JSON Schemas).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only components with this name (e.g. `generator`).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Print JSON (name, kind, description and the full option schema of each).
    #[arg(long)]
    pub json: bool,
}

/// Prints the components.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let mut all = crate::registry().components();
    if let Some(n) = &args.name {
        let names: Vec<&'static str> = all.iter().map(|c| c.name).collect();
        all.retain(|c| c.name == n);
        if all.is_empty() {
            let hint = nearest(n, &names)
                .map(|m| format!("did you mean '{m}'? "))
                .unwrap_or_default();
            anyhow::bail!("no component named '{n}': {hint}(run `ferry components` to list them)");
        }
    }
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    crate::output::print(&render(&all))?;
    Ok(())
}

/// The human listing.
pub fn render(all: &[ComponentInfo]) -> String {
    let mut out = String::new();
    for kind in [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
        ComponentKind::Format,
    ] {
        let of_kind: Vec<&ComponentInfo> = all.iter().filter(|c| c.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{}S\n", kind.as_str().to_uppercase()));
        for c in of_kind {
            out.push_str(&format!("  {}\n      {}\n", c.name, c.description));
            if let Some(schema) = &c.schema {
                let opts = options(schema);
                if opts.is_empty() && kind != ComponentKind::Format {
                    out.push_str("      (no options)\n");
                }
                let w = opts.iter().map(|o| o.name.len()).max().unwrap_or(0);
                let tw = opts.iter().map(|o| o.ty.len()).max().unwrap_or(0).min(28);
                for o in opts {
                    out.push_str(&format!(
                        "      {:w$}  {:tw$}  {}{}\n",
                        o.name,
                        o.ty,
                        o.presence,
                        if o.doc.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", o.doc)
                        },
                    ));
                }
            }
        }
    }
    out
}

/// One option of a component.
#[derive(Debug, PartialEq)]
pub struct Opt {
    /// The YAML key.
    pub name: String,
    /// Its type, readable: `integer`, `string`, `list of string`, `jsonl`, …
    pub ty: String,
    /// `required`, `optional` or `default: …`.
    pub presence: String,
    /// The first sentence of its description.
    pub doc: String,
}

/// The name among `names` closest to a mistyped `name` (`kafak` → `kafka`), if one is close.
pub fn nearest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(name, n), *n))
        .filter(|(d, n)| *d <= (n.len() / 3).max(1))
        .min()
        .map(|(_, n)| n)
}

/// How deep nested options are listed (`tls.ca_file`, `groups.rename`).
const NESTED_DEPTH: usize = 2;

/// The options described by a component's JSON Schema (properties of the root object), with
/// the sub-keys of nested options after each (`tls.ca_file`, `roll.max_bytes`).
pub fn options(schema: &Value) -> Vec<Opt> {
    let empty = serde_json::Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Vec::new();
    options_of(schema, defs, "", 0, &mut out);
    out
}

/// The object schema a property holds, when it holds one with properties of its own
/// (directly, through a `$ref`, or as the non-null alternative of an optional value).
fn nested_object<'a>(v: &'a Value, defs: &'a serde_json::Map<String, Value>) -> Option<&'a Value> {
    let v = resolve(v, defs);
    if v.get("properties")
        .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Some(v);
    }
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(|alt| {
            let alt = resolve(alt, defs);
            alt.get("properties").is_some().then_some(alt)
        })
}

fn options_of(
    schema: &Value,
    defs: &serde_json::Map<String, Value>,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Opt>,
) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (k, v) in props
        .iter()
        .filter(|(k, _)| depth > 0 || k.as_str() != "type")
    {
        out.push(option(k, v, &required, defs, prefix));
        if depth < NESTED_DEPTH {
            if let Some(nested) = nested_object(v, defs) {
                options_of(nested, defs, &format!("{prefix}{k}."), depth + 1, out);
            }
        }
    }
}

/// One option, described from its schema.
fn option(
    k: &str,
    v: &Value,
    required: &[&str],
    defs: &serde_json::Map<String, Value>,
    prefix: &str,
) -> Opt {
    {
        {
            let presence = if required.contains(&k) {
                "required".to_string()
            } else if let Some(d) = v.get("default").filter(|d| !d.is_null()) {
                format!("default {}", compact(d))
            } else {
                "optional".to_string()
            };
            let doc = v
                .get("description")
                .and_then(Value::as_str)
                .or_else(|| resolve(v, defs).get("description").and_then(Value::as_str))
                .unwrap_or("")
                .split("\n\n")
                .next()
                .unwrap_or("")
                .replace('\n', " ");
            Opt {
                name: format!("{prefix}{k}"),
                ty: type_of(v, defs, 0),
                presence,
                doc,
            }
        }
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn resolve<'a>(v: &'a Value, defs: &'a serde_json::Map<String, Value>) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(v),
        None => v,
    }
}

/// A readable type for a schema: `integer`, `string`, `list of string`, `a|b`, `map`.
fn type_of(v: &Value, defs: &serde_json::Map<String, Value>, depth: usize) -> String {
    if depth > 6 {
        return "value".into();
    }
    let v = resolve(v, defs);
    if let Some(c) = v.get("const") {
        return compact(c);
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .filter(|x| !x.is_null())
            .map(compact)
            .collect::<Vec<_>>()
            .join("|");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let mut names: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(|a| type_of(a, defs, depth + 1))
                .collect();
            names.dedup();
            return names.join(" or ");
        }
    }
    let ty = match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => return "value".into(),
    };
    match ty.as_str() {
        "array" => match v.get("items") {
            Some(items) => format!("list of {}", type_of(items, defs, depth + 1)),
            None => "list".into(),
        },
        "object" => "map".into(),
        _ => ty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_options_are_listed_with_types_and_defaults() {
        let all = crate::registry().components();
        let generator = all
            .iter()
            .find(|c| c.name == "generator")
            .expect("generator registered");
        let opts = options(generator.schema.as_ref().expect("schema"));
        let count = opts.iter().find(|o| o.name == "count").expect("count");
        assert_eq!(count.ty, "integer");
        assert!(count.doc.contains("Total records"), "{count:?}");
        let ts = opts
            .iter()
            .find(|o| o.name == "timestamps")
            .expect("timestamps");
        assert!(ts.ty.contains("fixed") && ts.ty.contains("now"), "{ts:?}");
        let text = render(&all);
        assert!(text.contains("SOURCES\n"), "{text}");
        assert!(
            text.contains("SINKS\n") && text.contains("FORMATS\n"),
            "{text}"
        );
        assert!(text.contains("  stdout\n"), "{text}");
    }

    #[test]
    fn nested_options_show_their_sub_keys() {
        let all = crate::registry().components();
        let names_of = |kind: ComponentKind, name: &str| -> Vec<String> {
            let c = all
                .iter()
                .find(|c| c.kind == kind && c.name == name)
                .expect("registered");
            options(c.schema.as_ref().expect("schema"))
                .into_iter()
                .map(|o| o.name)
                .collect()
        };
        let kafka = names_of(ComponentKind::Source, "kafka");
        for sub in ["tls.ca_file", "sasl.mechanism", "sasl.username"] {
            assert!(
                kafka.contains(&sub.to_string()),
                "{sub} missing from {kafka:?}"
            );
        }
        let sink = names_of(ComponentKind::Sink, "kafka");
        assert!(sink.contains(&"groups.rename".to_string()), "{sink:?}");
        let storage = names_of(ComponentKind::Sink, "storage");
        assert!(
            storage.contains(&"roll.max_bytes".to_string()),
            "{storage:?}"
        );
    }

    #[test]
    fn a_mistyped_name_gets_the_nearest() {
        let names = ["kafka", "storage", "backup", "generator"];
        assert_eq!(nearest("kafak", &names), Some("kafka"));
        assert_eq!(nearest("strage", &names), Some("storage"));
        assert_eq!(nearest("zzzzzz", &names), None);
    }
}
