//! A pipeline file (TOML) read into the steps' job specs: each step's keys are `submit`'s
//! long flags, parsed by the same code, and `${steps.NAME.output}` names an earlier step's
//! output.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use sluice_proto::pb;

use crate::JobArgs;

/// One step's options parsed as `submit` parses its flags.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct StepFlags {
    #[command(flatten)]
    job: JobArgs,
}

/// The flags a step's TOML value stands for.
fn flags_of(key: &str, value: &toml::Value, out: &mut Vec<String>) -> Result<()> {
    let flag = format!("--{}", key.replace('_', "-"));
    let scalar = |v: &toml::Value| -> Result<String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => bail!("{key}: {other} is not a string or a number"),
        }
    };
    match value {
        toml::Value::Boolean(true) => out.push(flag),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                out.extend([flag.clone(), scalar(item)?]);
            }
        }
        toml::Value::Table(t) if key == "params" => {
            for (k, v) in t {
                out.extend(["--param".to_string(), format!("{k}={}", scalar(v)?)]);
            }
        }
        other => out.extend([flag, scalar(other)?]),
    }
    Ok(())
}

/// `text` with every `${steps.NAME.output}` replaced by `outputs[NAME]`; the names used.
fn substitute(text: &str, outputs: &BTreeMap<String, String>) -> Result<(String, Vec<String>)> {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${steps.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${steps.".len()..];
        let end = after
            .find(".output}")
            .ok_or_else(|| anyhow!("{text:?}: write a step's output as ${{steps.NAME.output}}"))?;
        let name = &after[..end];
        let output = outputs
            .get(name)
            .ok_or_else(|| anyhow!("{text:?}: there is no step {name:?}"))?;
        out.push_str(output);
        used.push(name.to_string());
        rest = &after[end + ".output}".len()..];
    }
    out.push_str(rest);
    Ok((out, used))
}

fn substitute_value(
    value: &toml::Value,
    outputs: &BTreeMap<String, String>,
    used: &mut Vec<String>,
) -> Result<toml::Value> {
    Ok(match value {
        toml::Value::String(s) => {
            let (text, names) = substitute(s, outputs)?;
            used.extend(names);
            toml::Value::String(text)
        }
        toml::Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .map(|v| substitute_value(v, outputs, used))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// The pipeline in `text` (the file `file`), each step's job spec resolved.
pub fn parse(text: &str, file: &Path) -> Result<pb::PipelineSpec> {
    let doc: toml::Table =
        toml::from_str(text).with_context(|| format!("reading the pipeline {}", file.display()))?;
    let name = doc
        .get("pipeline")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| anyhow!("{}: [pipeline] needs a name", file.display()))?
        .to_string();
    let steps = match doc.get("steps") {
        Some(toml::Value::Array(steps)) => steps.clone(),
        _ => bail!("{}: no [[steps]]", file.display()),
    };
    let tables: Vec<toml::Table> = steps
        .into_iter()
        .map(|s| match s {
            toml::Value::Table(t) => Ok(t),
            other => Err(anyhow!(
                "{}: a step must be a table, not {other}",
                file.display()
            )),
        })
        .collect::<Result<_>>()?;
    let step_name = |t: &toml::Table| -> Result<String> {
        t.get("name")
            .and_then(toml::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: every step needs a name", file.display()))
    };
    // Outputs as the jobs will have them (absolute), for `${steps.NAME.output}`.
    let mut outputs = BTreeMap::new();
    for t in &tables {
        let name = step_name(t)?;
        let output = t
            .get("output")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| anyhow!("step {name}: no output"))?;
        let spec = resolve(&name, &[("--output", output)])?;
        outputs.insert(name, spec.output);
    }
    let mut out = Vec::with_capacity(tables.len());
    for t in &tables {
        let name = step_name(t)?;
        let mut depends_on: Vec<String> = match t.get("depends_on") {
            None => Vec::new(),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e| anyhow!("step {name}: depends_on: {e}"))?,
        };
        let mut argv = Vec::new();
        for (key, value) in t {
            if key == "name" || key == "depends_on" {
                continue;
            }
            let mut used = Vec::new();
            let value = substitute_value(value, &outputs, &mut used)
                .with_context(|| format!("step {name}: {key}"))?;
            for u in used {
                if !depends_on.contains(&u) {
                    depends_on.push(u);
                }
            }
            flags_of(key, &value, &mut argv).with_context(|| format!("step {name}"))?;
        }
        let flags = StepFlags::try_parse_from(&argv)
            .map_err(|e| anyhow!("step {name}: {}", e.render().to_string().trim()))?;
        let spec = flags
            .job
            .to_spec()
            .with_context(|| format!("step {name}"))?;
        out.push(pb::PipelineStep {
            name,
            depends_on,
            spec: Some(pb::JobSpec::from(&spec)),
        });
    }
    Ok(pb::PipelineSpec { name, steps: out })
}

/// The spec of step `name` from the flags `extra` alone, with stand-ins for the required
/// others (to resolve its output the way `submit` does).
fn resolve(name: &str, extra: &[(&str, &str)]) -> Result<sluice_common::spec::JobSpec> {
    let mut argv: Vec<String> = ["--plugin", "p", "--input", "i", "--format", "text"]
        .map(String::from)
        .to_vec();
    for (k, v) in extra {
        argv.extend([k.to_string(), v.to_string()]);
    }
    let flags = StepFlags::try_parse_from(&argv)
        .map_err(|e| anyhow!("step {name}: {}", e.render().to_string().trim()))?;
    flags.job.to_spec().with_context(|| format!("step {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_outputs_are_substituted_and_make_dependencies() {
        let outputs: BTreeMap<String, String> = [("agg".to_string(), "/d/eod".to_string())].into();
        let (text, used) = substitute("${steps.agg.output}/*.parquet", &outputs).unwrap();
        assert_eq!(
            (text.as_str(), used),
            ("/d/eod/*.parquet", vec!["agg".to_string()])
        );
        assert!(
            substitute("${steps.nope.output}", &outputs)
                .unwrap_err()
                .to_string()
                .contains("no step \"nope\"")
        );
        assert!(substitute("${steps.agg}", &outputs).is_err());
    }

    #[test]
    fn a_pipeline_file_becomes_steps_with_submit_options() {
        let text = r#"
[pipeline]
name = "eod"
[[steps]]
name = "aggregate"
plugin = "/p/libeod.so"
input = ["/in/a.csv", "/in/b.csv"]
format = "csv"
output = "/out/eod"
on_bad_record = "quarantine"
params = { fx = "EUR" }
overwrite = true
[[steps]]
name = "publish"
plugin = "/p/libpub.so"
input = ["${steps.aggregate.output}/part-*.parquet"]
format = ["parquet"]
output = "/out/pub"
"#;
        let p = parse(text, Path::new("eod.toml")).unwrap();
        assert_eq!(p.name, "eod");
        let agg = p.steps[0].spec.as_ref().unwrap();
        assert_eq!(agg.inputs, ["/in/a.csv", "/in/b.csv"]);
        assert_eq!(agg.on_bad_record, "quarantine");
        assert!(agg.overwrite);
        assert_eq!(agg.params.get("fx").map(String::as_str), Some("EUR"));
        let publish = &p.steps[1];
        assert_eq!(publish.depends_on, ["aggregate"]);
        assert_eq!(
            publish.spec.as_ref().unwrap().inputs,
            ["/out/eod/part-*.parquet"]
        );
        let bad = text.replace("on_bad_record", "on_bad_recrod");
        let e = parse(&bad, Path::new("eod.toml")).unwrap_err().to_string();
        assert!(
            e.contains("step aggregate") && e.contains("--on-bad-recrod"),
            "{e}"
        );
    }
}
