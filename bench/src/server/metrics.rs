//! Where the server spent its time during row 6, from its own Prometheus histograms.

use super::api::Api;

/// Where the time went, from the server's own histograms: the process-manager steps and
/// commands that took the most time in total.
pub(super) async fn time_notes(api: &Api) -> anyhow::Result<Vec<String>> {
    let metrics = api.metrics().await?;
    Ok(vec![
        format!(
            "row 6 time by process-manager action (total s / count = mean ms): {}",
            time_by(&metrics, "purser_pm_action_duration_seconds", "action", 8)
        ),
        format!(
            "row 6 time by command: {}",
            time_by(&metrics, "purser_command_duration_seconds", "command", 8)
        ),
        format!(
            "row 6 time in event-store appends by aggregate: {}",
            time_by(&metrics, "purser_append_duration_seconds", "aggregate", 8)
        ),
    ])
}

/// The `top` values of `label` that took the most time in the Prometheus histogram `metric`,
/// as `value total s / count = mean ms`, summed over the histogram's other labels.
fn time_by(metrics: &str, metric: &str, label: &str, top: usize) -> String {
    let mut by: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let label = format!("{label}=\"");
    for (suffix, slot) in [("_sum", 0), ("_count", 1)] {
        let name = format!("{metric}{suffix}{{");
        for line in metrics.lines().filter(|l| l.starts_with(&name)) {
            let Some((labels, value)) = line[name.len()..].split_once("} ") else {
                continue;
            };
            let Some(key) = labels
                .split(',')
                .find_map(|l| l.strip_prefix(label.as_str()))
                .map(|v| v.trim_end_matches('"').to_owned())
            else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let entry = by.entry(key).or_default();
            if slot == 0 {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
    let mut all: Vec<(String, (f64, f64))> = by.into_iter().collect();
    all.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    let shown: Vec<String> = all
        .iter()
        .take(top)
        .map(|(k, (sum, count))| {
            format!(
                "{k} {sum:.1} s / {count:.0} = {:.1} ms",
                if *count > 0.0 {
                    sum / count * 1000.0
                } else {
                    0.0
                }
            )
        })
        .collect();
    if shown.is_empty() {
        "none recorded".into()
    } else {
        shown.join(", ")
    }
}
