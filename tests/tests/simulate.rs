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
