//! Every input of the fuzz corpora (`fuzz/corpus/TARGET/`) and every input a fuzz run found
//! crashing (`fuzz/regressions/TARGET/`, kept for good) goes through the same functions the fuzz
//! targets call (`fuzz/harness.rs`): none may panic, and the inputs `fuzz/expected.txt` names
//! (`TARGET/FILE<TAB>outcome`) give that outcome. The fuzzing itself: README, "Fuzzing".

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn inputs(folder: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let expected: std::collections::BTreeMap<String, String> = std::fs::read_to_string(root.join("expected.txt"))
        .expect("fuzz/expected.txt")
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(input, outcome)| (input.to_owned(), outcome.to_owned()))
        .collect();
    let mut checked = 0;
    let mut failed = Vec::new();
    let mut outcomes = String::new();
    for (name, run) in harness::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} holds no input");
        let regressions = inputs(&root.join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("an input");
            let key = format!("{name}/{}", file.file_name().unwrap_or_default().to_string_lossy());
            match std::panic::catch_unwind(|| run(&data)) {
                Ok(outcome) => {
                    outcomes.push_str(&format!("{key}\t{outcome}\n"));
                    if let Some(want) = expected.get(&key) {
                        checked += 1;
                        if *want != outcome {
                            failed.push(format!("{key}: {outcome:?}, expected {want:?}"));
                        }
                    }
                }
                Err(_) => failed.push(format!("{key}: panicked")),
            }
        }
        eprintln!(
            "{name}: {} corpus inputs, {} regressions",
            corpus.len(),
            regressions.len()
        );
    }
    if let Some(path) = std::env::var_os("FUZZ_OUTCOMES") {
        std::fs::write(path, &outcomes).expect("write the outcomes");
    }
    assert_eq!(
        checked,
        expected.len(),
        "fuzz/expected.txt names inputs that are not there"
    );
    assert!(failed.is_empty(), "{failed:#?}");
}
