//! A node's `/metrics`, read strictly: every line must be valid Prometheus text (version
//! 0.0.4), or the scrape is refused with the line that broke it.

use std::collections::{BTreeMap, HashMap};

/// A series' labels other than `le`, in order.
type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name → its `# TYPE`.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// `GET {base}/metrics`, checked to be Prometheus text.
    pub async fn of(base: &str) -> Scrape {
        let response = crate::stack::http()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {base}/metrics: {e}"));
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "content type {content_type}"
        );
        let text = response.text().await.expect("metrics text");
        Scrape::parse(&text)
            .unwrap_or_else(|e| panic!("{base}/metrics is not Prometheus text: {e}"))
    }

    /// Parses the text exposition format; `Err` names the first line that is not valid.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut scrape = Scrape::default();
        for (number, line) in text.lines().enumerate() {
            let fail = |why: &str| Err(format!("line {}: {why}: {line:?}", number + 1));
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        if !is_name(name) {
                            return fail("bad metric name");
                        }
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return fail("unknown type");
                        }
                        if scrape.types.insert(name.into(), kind.into()).is_some() {
                            return fail("second TYPE line for a family");
                        }
                    }
                    (Some("HELP"), Some(name), _) if is_name(name) => {}
                    (Some("HELP" | "TYPE"), ..) => return fail("malformed HELP or TYPE"),
                    _ => {}
                }
                continue;
            }
            match sample(line) {
                Some(sample) => {
                    if scrape.family_type(&sample.name).is_none() {
                        return fail("sample before its family's TYPE");
                    }
                    scrape.samples.push(sample);
                }
                None => return fail("malformed sample"),
            }
        }
        scrape.check_histograms()?;
        Ok(scrape)
    }

    /// The type of the family `name` belongs to (`x_bucket`, `x_sum`, `x_count` belong to
    /// histogram `x`).
    pub fn family_type(&self, name: &str) -> Option<&str> {
        if let Some(kind) = self.types.get(name) {
            return Some(kind);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let family = name.strip_suffix(suffix)?;
            self.types
                .get(family)
                .filter(|k| *k == "histogram" || *k == "summary")
                .map(String::as_str)
        })
    }

    /// The sum of the samples named `name` whose labels include `labels`; 0 when none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Whether a family is declared (with any samples).
    pub fn has(&self, family: &str) -> bool {
        self.types.contains_key(family)
    }

    /// Every label value of every sample.
    pub fn label_values(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.samples.iter().flat_map(|s| {
            s.labels
                .iter()
                .map(move |(k, v)| (s.name.as_str(), k.as_str(), v.as_str()))
        })
    }

    /// Histograms: buckets cumulative, and the `+Inf` bucket equal to `_count`.
    fn check_histograms(&self) -> Result<(), String> {
        let mut series: HashMap<(String, Labels), Vec<(f64, f64)>> = HashMap::new();
        for s in self.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let le = labels
                .iter()
                .position(|(k, _)| k == "le")
                .map(|i| labels.remove(i).1)
                .ok_or_else(|| format!("{}: a bucket without le", s.name))?;
            let bound = parse_value(&le).ok_or_else(|| format!("{}: le {le:?}", s.name))?;
            let family = s.name.trim_end_matches("_bucket").to_owned();
            series
                .entry((family, labels))
                .or_default()
                .push((bound, s.value));
        }
        for ((family, labels), mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family} {labels:?}: buckets not cumulative"));
            }
            let Some(&(inf, total)) = buckets.last() else {
                continue;
            };
            let wanted: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = self.value(&format!("{family}_count"), &wanted);
            if inf != f64::INFINITY || total != count {
                return Err(format!(
                    "{family} {labels:?}: +Inf bucket {total} vs count {count}"
                ));
            }
        }
        Ok(())
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// `name{k="v",...} value [timestamp]`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !is_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        // Each round reads `key="value"` and the `,` or `}` after it.
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = inner.split_once('=')?;
            let quoted = after_key.strip_prefix('"')?;
            if !is_name(key) {
                return None;
            }
            let (value, after_value) = unescape(quoted)?;
            if labels.insert(key.to_owned(), value).is_some() {
                return None;
            }
            inner = match after_value.strip_prefix(',') {
                Some(more) => more,
                None if after_value.starts_with('}') => after_value,
                None => return None,
            };
        }
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = parse_value(fields.next()?)?;
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<i64>().is_err()
    {
        return None;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and what follows it.
fn unescape(quoted: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match (escaped, c) {
            (true, 'n') => value.push('\n'),
            (true, '\\' | '"') => value.push(c),
            (true, _) => return None,
            (false, '\\') => {
                escaped = true;
                continue;
            }
            (false, '"') => return Some((value, &quoted[i + 1..])),
            (false, c) => value.push(c),
        }
        escaped = false;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters, gauges, labels with escapes and histograms parse; broken lines do not.
    #[test]
    fn the_text_format_is_read_strictly() {
        let text = "# HELP a_total A counter\n# TYPE a_total counter\na_total{node_id=\"n\",x=\"q\\\"\"} 3\n\
                    # TYPE g gauge\ng 1.5\n\
                    # TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.3\nh_seconds_count 2\n";
        let scrape = Scrape::parse(text).unwrap();
        assert_eq!(scrape.value("a_total", &[("x", "q\"")]), 3.0);
        assert_eq!(scrape.value("g", &[]), 1.5);
        assert_eq!(scrape.value("h_seconds_count", &[]), 2.0);
        for bad in [
            "# TYPE a counter\na{x=\"1\"}",
            "# TYPE a counter\na{x=1} 2",
            "a 1",
            "# TYPE a counter\na 1 2 3",
            "# TYPE a countr\na 1",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3",
        ] {
            assert!(Scrape::parse(bad).is_err(), "{bad:?}");
        }
    }
}
