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
    let counts = [
        ("operations recorded", findings.ops.to_string()),
        ("writes acknowledged", findings.writes_acked.to_string()),
        (
            "writes of unknown outcome",
            findings.writes_unknown.to_string(),
        ),
        ("linearizable reads answered", findings.reads_ok.to_string()),
        (
            "signings completed (all schemes)",
            findings.signatures.to_string(),
        ),
        ("ECDSA signings", findings.signed_ecdsa.to_string()),
        (
            "ECDSA signings served from a presignature",
            findings.presigned.to_string(),
        ),
        ("Ed25519 signings", findings.signed_ed25519.to_string()),
        ("BIP-340 signings", findings.signed_bip340.to_string()),
        ("partition probes", findings.probes.to_string()),
        (
            "signing sessions failed or expired",
            findings.sign_failed.to_string(),
        ),
        ("terms with a leader observed", findings.terms.to_string()),
        (
            "longest stretch without an acknowledged write",
            format!("{} ms", findings.max_unavailable_ms),
        ),
    ];
    for (what, count) in counts {
        let _ = writeln!(md, "| {what} | {count} |");
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## Faults\n");
    if findings.recoveries.is_empty() {
        let _ = writeln!(md, "None recorded.\n");
    } else {
        let _ = writeln!(
            md,
            "| fault | target | first write begun after, acknowledged | first signing begun after, completed |\n|---|---|---|---|"
        );
        for r in &findings.recoveries {
            let ms = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |ms| format!("{ms} ms"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.action,
                r.target,
                ms(r.first_ack_ms),
                if r.parties_cut_off {
                    format!(
                        "{} (parties cut off: not required)",
                        ms(r.first_signature_ms)
                    )
                } else {
                    ms(r.first_signature_ms)
                }
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Checks\n");
    let sections: [(&str, &Vec<String>); 14] = [
        ("Missing from the history", &findings.history_errors),
        ("Below the scenario's floors", &findings.below_floor),
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
            "Presignatures serving an input that forbids them",
            &findings.presignature_misuse,
        ),
        (
            "Sessions stuck or failed without a reason",
            &findings.stuck_sessions,
        ),
        (
            "Signings whose outcome was never settled",
            &findings.unresolved,
        ),
        (
            "Partition probes with the wrong outcome",
            &findings.probe_violations,
        ),
        (
            "Faults after which writes did not resume",
            &findings.writes_not_resumed,
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
