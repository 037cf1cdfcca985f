//! JSONL datasets from the files in `tests/data/`, seeded sampling that
//! resumes from a serialized state, and train/held-out splits.

use std::path::PathBuf;

use serde_json::json;

use sdpo_core::ChatMessage;
use sdpo_train::dataset::{Dataset, DatasetError, Prompt, PromptSampler, Row, SamplerState};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn loads_text_and_chat_prompts_with_their_fields() {
    let d = Dataset::from_jsonl(data("rows.jsonl")).unwrap();
    assert_eq!(d.len(), 5, "blank lines are skipped");

    let first = &d.rows()[0];
    assert_eq!(first.prompt, Prompt::Text("What is 6 * 7?".into()));
    assert_eq!(
        first.prompt.to_messages(),
        vec![ChatMessage::user("What is 6 * 7?")]
    );
    assert_eq!(first.fields["answer"], json!("42"));
    assert_eq!(first.fields["id"], json!("mul-1"));
    assert!(!first.fields.contains_key("prompt"));

    let chat = &d.rows()[1];
    assert_eq!(
        chat.prompt.to_messages(),
        vec![
            ChatMessage::system("Answer with a number."),
            ChatMessage::user("What is 2 + 2?")
        ]
    );
    assert_eq!(chat.prompt.last_user_text(), Some("What is 2 + 2?"));
    assert_eq!(chat.fields["answer"], json!(4));

    let multi_turn = &d.rows()[2];
    assert_eq!(multi_turn.prompt.last_user_text(), Some("Another one?"));
    assert_eq!(multi_turn.fields["answer"], json!(null));
    assert_eq!(d.rows()[3].fields["meta"], json!({"difficulty": 1}));
}

#[test]
fn bad_files_name_the_file_and_line() {
    let cases = [
        (
            "bad_prompt_type.jsonl",
            ":4: `prompt` should be a string or a list of {\"role\", \"content\"} messages, found a number",
        ),
        ("missing_prompt.jsonl", ":2: the row has no `prompt` field"),
        ("bad_json.jsonl", ":2: invalid JSON: EOF while parsing a string"),
        (
            "bad_message.jsonl",
            ":1: `prompt[1].content` should be a string, found nothing",
        ),
    ];
    for (file, expected) in cases {
        let err = Dataset::from_jsonl(data(file)).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DatasetError::Row { .. }), "{message}");
        let path = data(file).display().to_string();
        assert!(
            message.starts_with(&format!("{path}{expected}")),
            "{file}: {message}"
        );
    }
    let err = Dataset::from_jsonl(data("blank.jsonl")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("dataset `{}` has no rows", data("blank.jsonl").display())
    );
    let err = Dataset::from_jsonl(data("no_such_file.jsonl")).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }));
    assert!(err.to_string().contains("no_such_file.jsonl"), "{err}");
}

#[test]
fn sampling_resumes_from_a_serialized_state() {
    let d = Dataset::from_jsonl(data("rows.jsonl")).unwrap();
    let mut straight = d.sampler(3, 1234).unwrap();
    let all: Vec<Vec<usize>> = straight.by_ref().take(8).map(|b| b.rows()).collect();

    let mut first = d.sampler(3, 1234).unwrap();
    let head: Vec<Vec<usize>> = first.by_ref().take(3).map(|b| b.rows()).collect();
    let saved = serde_json::to_string(&first.state()).unwrap();
    let state: SamplerState = serde_json::from_str(&saved).unwrap();
    let tail: Vec<Vec<usize>> = d
        .resume_sampler(state)
        .unwrap()
        .take(5)
        .map(|b| b.rows())
        .collect();
    assert_eq!([head, tail].concat(), all);

    // Every epoch visits each of the 5 rows once: 24 prompts = 4 epochs + 4.
    let flat: Vec<usize> = all.concat();
    for epoch in flat.chunks(5).take(4) {
        let mut rows = epoch.to_vec();
        rows.sort_unstable();
        assert_eq!(rows, vec![0, 1, 2, 3, 4]);
    }
    // Another seed, another order.
    let other: Vec<Vec<usize>> = d
        .sampler(3, 4321)
        .unwrap()
        .take(8)
        .map(|b| b.rows())
        .collect();
    assert_ne!(other, all);
}

#[test]
fn batches_tell_groups_apart() {
    let d = Dataset::from_rows(vec![Row::new("a"), Row::new("b")]).unwrap();
    let mut sampler: PromptSampler = d.sampler(3, 0).unwrap();
    let batch = sampler.next_batch();
    assert_eq!(batch.step, 0);
    let slots = batch.samples(2);
    let groups: Vec<usize> = slots.iter().map(|s| s.group).collect();
    assert_eq!(groups, vec![0, 0, 1, 1, 2, 2]);
    // Three prompts from two rows: one row appears twice, as two groups.
    assert_eq!(batch.prompts[0].epoch, 0);
    assert_eq!(batch.prompts[2].epoch, 1);
    assert_eq!(sampler.next_batch().step, 1);
}

#[test]
fn held_out_split_is_reproducible() {
    let d = Dataset::from_jsonl(data("rows.jsonl")).unwrap();
    let a = d.split(2, 7).unwrap();
    let b = d.split(2, 7).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.train.len(), a.held_out.len()), (3, 2));
    for row in a.held_out.rows() {
        assert!(!a.train.rows().contains(row));
    }
    assert!(matches!(
        d.split(5, 7),
        Err(DatasetError::InvalidSplit {
            held_out: 5,
            len: 5
        })
    ));
}
