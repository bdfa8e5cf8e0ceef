//! The Markdown report a scenario leaves under `chaos/results/`, and its JSON twin.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::check::Findings;

pub fn write(
    path: &Path,
    scenario: &str,
    histories: &[PathBuf],
    findings: &Findings,
    summary: &str,
) -> anyhow::Result<()> {
    let mut md = String::new();
    let _ = writeln!(md, "# Chaos run: {scenario}\n");
    let _ = writeln!(md, "```\n{summary}\n```\n");
    let _ = writeln!(
        md,
        "Result: **{}**\n",
        if findings.passed() { "pass" } else { "FAIL" }
    );
    let _ = writeln!(md, "## Load\n");
    let _ = writeln!(md, "| what | count |\n|---|---|");
    let _ = writeln!(md, "| operations recorded | {} |", findings.ops);
    let _ = writeln!(md, "| writes acknowledged | {} |", findings.writes_acked);
    let _ = writeln!(
        md,
        "| writes of unknown outcome | {} |",
        findings.writes_unknown
    );
    let _ = writeln!(
        md,
        "| linearizable reads answered | {} |",
        findings.reads_ok
    );
    let _ = writeln!(md, "| signatures | {} |", findings.signatures);
    let _ = writeln!(
        md,
        "| signing sessions failed or expired | {} |",
        findings.sign_failed
    );
    let _ = writeln!(md, "| terms with a leader observed | {} |", findings.terms);
    let _ = writeln!(
        md,
        "| longest stretch without an acknowledged write | {} ms |\n",
        findings.max_unavailable_ms
    );
    let _ = writeln!(md, "## Faults\n");
    if findings.recoveries.is_empty() {
        let _ = writeln!(md, "None recorded.\n");
    } else {
        let _ = writeln!(
            md,
            "| fault | target | first acknowledged write after | first signing begun after, completed |\n|---|---|---|---|"
        );
        for r in &findings.recoveries {
            let ms = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |ms| format!("{ms} ms"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.action,
                r.target,
                ms(r.first_ack_ms),
                ms(r.first_signature_ms)
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Checks\n");
    let sections: [(&str, &Vec<String>); 9] = [
        ("Acknowledged writes lost", &findings.lost),
        (
            "Linearizability violations",
            &findings.linearizable.violations,
        ),
        (
            "Linearizability undecided",
            &findings.linearizable.undecided,
        ),
        ("Two leaders in one term", &findings.split_brain),
        ("Two signatures for one request", &findings.double_signed),
        ("Signatures that do not verify", &findings.bad_signatures),
        (
            "Sessions stuck or failed without a reason",
            &findings.stuck_sessions,
        ),
        (
            "Partition probes with the wrong outcome",
            &findings.probe_violations,
        ),
        (
            "Faults after which signing did not resume",
            &findings.signing_not_resumed,
        ),
    ];
    for (title, items) in sections {
        if items.is_empty() {
            let _ = writeln!(md, "- {title}: none");
        } else {
            let _ = writeln!(md, "- {title}: {}", items.len());
            for item in items.iter().take(50) {
                let _ = writeln!(md, "  - {item}");
            }
        }
    }
    let _ = writeln!(
        md,
        "\nRegisters checked for linearizability: {} (Wing–Gong search with memoisation, per key).\n",
        findings.linearizable.keys
    );
    let _ = writeln!(md, "## History files\n");
    for h in histories {
        let _ = writeln!(md, "- `{}`", h.display());
    }
    std::fs::write(path, md).with_context(|| format!("report {}", path.display()))?;
    let json_path = path.with_extension("json");
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "scenario": scenario,
        "summary": summary,
        "passed": findings.passed(),
        "findings": findings,
    }))?;
    std::fs::write(&json_path, json).with_context(|| format!("report {}", json_path.display()))?;
    Ok(())
}
