//! `serval simulate` end to end: the real binary on a tiny trace, JSON parsed back.

use serval_tests::run_serval;

#[test]
fn simulate_prints_one_json_object_per_policy() {
    let dir = std::env::temp_dir().join(format!("serval-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("arrivals.csv");
    // A burst, then one request every 10 minutes.
    let mut text = String::from("seconds\n");
    for i in 0..20 {
        text.push_str(&format!("{}\n", 1.0 + f64::from(i) * 0.05));
    }
    for i in 1..=6 {
        text.push_str(&format!("{}\n", i * 600));
    }
    std::fs::write(&trace, text).expect("write trace");
    let trace_arg = trace.to_string_lossy().to_string();
    let args = [
        "simulate",
        "--trace",
        &trace_arg,
        "--policy",
        "kpa,keepalive,peak",
        "--json",
    ];
    let (code, stdout, stderr) = run_serval(args);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON array");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["policy"].as_str()).collect();
    assert_eq!(names, ["kpa", "keepalive", "peak"]);
    for row in &rows {
        for key in [
            "requests",
            "replica_seconds",
            "cold_starts",
            "p50_wait_ms",
            "p99_wait_ms",
            "dropped",
        ] {
            assert!(row[key].is_number(), "{key} in {row}");
        }
        assert_eq!(row["requests"], 26);
    }
    // Peak is warm from the start: nobody meets a cold start.
    assert_eq!(rows[2]["cold_starts"], 0);
    // Same input, same numbers.
    let (_, again, _) = run_serval(args);
    assert_eq!(stdout, again);

    // A malformed line names the file and the line.
    std::fs::write(&trace, "1.0\nsoon\n").expect("write trace");
    let (code, _, stderr) = run_serval(["simulate", "--trace", &trace_arg]);
    assert_eq!(code, 1);
    assert!(stderr.contains("arrivals.csv:2:"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Mooncake-format trace: `minutes` of bursts every `period` seconds over a base rate.
fn llm_trace(path: &std::path::Path, minutes: u32, period: u32, seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut text = String::new();
    let mut t = 0.0;
    while t < f64::from(minutes * 60) {
        let bursting = (t as u32 / period) % 2 == 1;
        let rate = if bursting { 3.0 } else { 0.5 };
        t += -(1.0 - next()).ln() / rate;
        let output = 20 + (next() * 200.0) as u32;
        text.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": 500, \"output_length\": {output}}}\n",
            (t * 1000.0) as u64
        ));
    }
    std::fs::write(path, text).expect("write trace");
}

#[test]
fn evaluate_holds_each_trace_out_and_reports_it_beside_the_kpa() {
    let dir = std::env::temp_dir().join(format!("serval-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let first = dir.join("first.jsonl");
    let second = dir.join("second.jsonl");
    llm_trace(&first, 10, 120, 1);
    llm_trace(&second, 10, 300, 2);
    let (first, second) = (
        first.to_string_lossy().to_string(),
        second.to_string_lossy().to_string(),
    );
    let plots = dir.join("plots");
    let plots_arg = plots.to_string_lossy().to_string();
    let (code, stdout, stderr) = run_serval([
        "simulate",
        "--evaluate",
        "--trace",
        &first,
        "--trace",
        &second,
        "--json",
        "--plots",
        &plots_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let folds: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON array");
    assert_eq!(folds.len(), 2);
    let held_out: Vec<&str> = folds
        .iter()
        .filter_map(|f| f["held_out"].as_str())
        .collect();
    assert_eq!(held_out, ["first.jsonl", "second.jsonl"]);
    assert_eq!(folds[0]["tuned_on"], serde_json::json!(["second.jsonl"]));
    assert_eq!(folds[1]["tuned_on"], serde_json::json!(["first.jsonl"]));
    for fold in &folds {
        assert_eq!(fold["kpa_defaults"]["candidate"]["window_s"], 60);
        // The class's default states no budget.
        assert_eq!(
            fold["serval_default"]["candidate"]["cold_start_budget"],
            serde_json::Value::Null
        );
        assert_eq!(fold["kpa_grid"].as_array().map(Vec::len), Some(36));
        assert_eq!(fold["serval_sweep"].as_array().map(Vec::len), Some(57));
        // The tuned rows are members of their sweeps, reported on the held-out trace.
        for (row, sweep) in [("kpa_tuned", "kpa_grid"), ("serval_tuned", "serval_sweep")] {
            let tuned = &fold[row]["summary"];
            assert!(
                fold[sweep]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| &c["summary"] == tuned),
                "{row} is not one of {sweep}"
            );
        }
    }
    // What a fold reports for the KPA is the held-out trace's own run, as a plain
    // `serval simulate` of that trace alone gives it.
    let (code, alone, stderr) =
        run_serval(["simulate", "--trace", &second, "--policy", "kpa", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let alone: Vec<serde_json::Value> = serde_json::from_str(&alone).expect("JSON array");
    for key in ["replica_seconds", "cold_starts", "p99_wait_ms", "requests"] {
        assert_eq!(
            folds[1]["kpa_defaults"]["summary"][key], alone[0][key],
            "{key}"
        );
    }
    for fold in 1..=2 {
        let png = plots.join(format!("frontier-{fold}.png"));
        let bytes = std::fs::read(&png).expect("frontier plot written");
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }

    // One LLM trace cannot be held out against anything.
    let (code, _, stderr) = run_serval(["simulate", "--evaluate", "--trace", &first]);
    assert_eq!(code, 1);
    assert!(stderr.contains("at least two"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_serval_policy_runs_at_the_budget_given() {
    let dir = std::env::temp_dir().join(format!("serval-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("bursts.jsonl");
    llm_trace(&trace, 20, 120, 3);
    let trace = trace.to_string_lossy().to_string();
    // `serval` alone, with `budget` when given, as JSON or as the table.
    let serval_out = |budget: Option<&str>, json: bool| {
        let mut args = vec!["simulate", "--trace", &trace, "--policy", "serval"];
        if json {
            args.push("--json");
        }
        args.extend(
            budget
                .map(|b| ["--cold-start-budget", b])
                .into_iter()
                .flatten(),
        );
        let (code, stdout, stderr) = run_serval(args);
        assert_eq!(code, 0, "{budget:?}: {stderr}");
        stdout
    };
    let serval_json = |budget: Option<&str>| serval_out(budget, true);
    let cost_and_cold = |budget: &str| {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&serval_json(Some(budget))).expect("JSON array");
        let cost = rows[0]["replica_seconds"]
            .as_f64()
            .expect("replica_seconds");
        let cold = rows[0]["cold_starts"].as_f64().expect("cold_starts");
        (cost, cold)
    };
    // A tight budget buys headroom; a loose one spends less and lets more requests wait.
    let (tight_cost, tight_cold) = cost_and_cold("0.5%");
    let (loose_cost, loose_cold) = cost_and_cold("0.4");
    assert!(
        tight_cost > loose_cost && tight_cold < loose_cold,
        "0.5%: {tight_cost} replica-s, {tight_cold} cold; 40%: {loose_cost} replica-s, {loose_cold} cold"
    );
    // The default states no budget, as a revision that only names the class: not 2%.
    assert_ne!(serval_json(None), serval_json(Some("2%")));
    for (budget, said) in [
        (None, "serval without a cold-start budget"),
        (Some("2%"), "serval's cold-start budget 2%"),
    ] {
        let table = serval_out(budget, false);
        assert!(table.contains(said), "{budget:?}: {table}");
    }

    for bad in ["0", "60%", "lots"] {
        let (code, _, stderr) =
            run_serval(["simulate", "--trace", &trace, "--cold-start-budget", bad]);
        assert_eq!(code, 1, "{bad}");
        assert!(
            stderr.contains("--cold-start-budget") && stderr.contains(&format!("{bad:?}")),
            "{bad}: {stderr}"
        );
    }
    let (code, _, stderr) = run_serval([
        "simulate",
        "--evaluate",
        "--trace",
        &trace,
        "--cold-start-budget",
        "5%",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("sweeps the budget"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
