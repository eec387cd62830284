//! `loadgen median FILE...`: the median of several runs' JSON reports, figure by figure.
//!
//! Reports of one command have the same shape, so the median is taken at each path where the
//! runs hold a number: the middle value of the sorted runs (for an even count, the lower of the
//! two middle ones), so every figure is one a run really measured.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

/// The per-figure median of `runs` (the first run gives the shape and the non-numbers).
pub fn median(runs: &[Value]) -> Value {
    let Some(first) = runs.first() else {
        return Value::Null;
    };
    match first {
        Value::Number(_) => {
            let mut numbers: Vec<&Value> = runs.iter().filter(|v| v.is_number()).collect();
            numbers.sort_by(|a, b| {
                let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                a.total_cmp(&b)
            });
            numbers
                .get(numbers.len().saturating_sub(1) / 2)
                .map_or(Value::Null, |v| (*v).clone())
        }
        Value::Array(items) => Value::Array(
            (0..items.len())
                .map(|i| {
                    let column: Vec<Value> =
                        runs.iter().filter_map(|r| r.get(i).cloned()).collect();
                    median(&column)
                })
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .keys()
                .map(|key| {
                    let column: Vec<Value> = runs
                        .iter()
                        .map(|r| r.get(key).cloned().unwrap_or(Value::from(0)))
                        .collect();
                    (key.clone(), median(&column))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Reads the reports, prints their median's table, and returns it.
pub fn of_files(files: &[PathBuf]) -> anyhow::Result<Value> {
    let runs: Vec<Value> = files
        .iter()
        .map(|f| {
            let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", f.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!runs.is_empty(), "no reports given");
    let median = median(&runs);
    let table = match median["mode"].as_str() {
        Some("fanout") => crate::table::fanout(&serde_json::from_value(median.clone())?),
        Some("chat") => crate::table::chat(&serde_json::from_value(median.clone())?),
        Some("reconnect") => crate::table::reconnect(&serde_json::from_value(median.clone())?),
        other => anyhow::bail!("not a loadgen report (mode {other:?})"),
    };
    println!("median of {} runs", runs.len());
    print!("{table}");
    Ok(median)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_figure_is_the_middle_run() {
        let runs = vec![
            json!({"mode": "x", "a": 3, "t": [{"p99": 1.5, "n": "g"}]}),
            json!({"mode": "x", "a": 1, "t": [{"p99": 9.0, "n": "g"}]}),
            json!({"mode": "x", "a": 2, "t": [{"p99": 2.5, "n": "g"}]}),
        ];
        assert_eq!(
            median(&runs),
            json!({"mode": "x", "a": 2, "t": [{"p99": 2.5, "n": "g"}]})
        );
        assert_eq!(median(&runs[..2])["a"], 1, "the lower middle of two");
    }
}
