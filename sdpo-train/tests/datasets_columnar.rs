//! Parquet files, Arrow files and Hugging Face `datasets` folders (`tests/data/datasets/`,
//! written by `scripts/make_dataset_fixtures.py` with pyarrow and `datasets`), read with
//! verl's schema as is or through a column mapping; errors name the file, row and column.

use std::path::PathBuf;

use serde_json::json;

use sdpo_core::ChatMessage;
use sdpo_train::dataset::{Columns, Dataset, DatasetError};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/datasets")
        .join(name)
}

fn open(name: &str, split: &str) -> Result<Dataset, DatasetError> {
    Dataset::open(data(name), &Columns::default(), split)
}

/// The nine training rows of the fixtures: `a+b` for a, b in 1..=3.
fn assert_verl_train(d: &Dataset) {
    assert_eq!(d.len(), 9);
    let first = &d.rows()[0];
    assert_eq!(
        first.prompt.to_messages(),
        vec![
            ChatMessage::system("Answer with the number only."),
            ChatMessage::user("What is 1+1?")
        ]
    );
    assert_eq!(
        first.fields["answer"],
        json!("2"),
        "reward_model.ground_truth"
    );
    assert_eq!(first.fields["data_source"], json!("addition"));
    assert_eq!(first.fields["extra_info"]["index"], json!(0));
    assert_eq!(d.rows()[8].fields["answer"], json!("6"));
}

#[test]
fn verl_parquet_files_read_as_they_are() {
    assert_verl_train(&open("verl_train.parquet", "train").unwrap());
    // zstd-compressed (the fixture's test split).
    let test = open("verl_test.parquet", "train").unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.rows()[0].fields["answer"], json!("5"));
}

#[test]
fn datasets_folders_read_their_split() {
    // save_to_disk of a DatasetDict (Arrow shards per split) and of one Dataset.
    assert_verl_train(&open("hf_saved", "train").unwrap());
    assert_eq!(open("hf_saved", "test").unwrap().len(), 3);
    assert_verl_train(&open("hf_saved_single", "train").unwrap());
    // push_to_hub's parquet shards, in shard order.
    assert_verl_train(&open("hf_hub_layout", "train").unwrap());
    assert_eq!(open("hf_hub_layout", "test").unwrap().len(), 3);
    // One Arrow shard on its own.
    assert_verl_train(&open("hf_saved/train/data-00000-of-00001.arrow", "train").unwrap());

    let err = open("hf_saved", "validation").unwrap_err().to_string();
    assert!(
        err.contains("no split `validation`") && err.contains("train, test"),
        "{err}"
    );
    let err = open("hf_hub_layout", "validation").unwrap_err().to_string();
    assert!(err.contains("data/train-00000-of-00002.parquet"), "{err}");
}

#[test]
fn a_column_mapping_picks_prompt_answer_and_feedback() {
    let columns = Columns {
        prompt: "question".into(),
        answer: Some("solution".into()),
        feedback: Some("hint".into()),
    };
    let d = Dataset::open(data("flat.parquet"), &columns, "train").unwrap();
    assert_eq!(d.len(), 6);
    assert_eq!(d.rows()[0].prompt.last_user_text(), Some("1*2="));
    assert_eq!(d.rows()[0].fields["answer"], json!(2));
    assert_eq!(d.rows()[0].fields["feedback"], json!("multiply"));

    // verl's nested feedback column.
    let nested = Columns {
        feedback: Some("extra_info.feedback".into()),
        ..Columns::default()
    };
    let d = Dataset::open(data("verl_train.parquet"), &nested, "train").unwrap();
    assert_eq!(d.rows()[0].fields["feedback"], json!("1+1 is not 3"));
}

#[test]
fn bad_files_and_rows_name_the_file_row_and_column() {
    let err = open("bad_prompt.parquet", "train").unwrap_err().to_string();
    assert!(err.contains("bad_prompt.parquet row 0: "), "{err}");
    assert!(err.contains("prompt") && err.contains("a number"), "{err}");

    let columns = Columns {
        answer: Some("reward_model.solution".into()),
        ..Columns::default()
    };
    let err = Dataset::open(data("verl_train.parquet"), &columns, "train")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("verl_train.parquet row 0: column `reward_model.solution`: missing"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("junk.parquet", &b"PAR1 not really"[..]),
        ("junk.arrow", b"ARROW1"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Dataset::open(&path, &Columns::default(), "train").unwrap_err();
        assert!(matches!(err, DatasetError::Format { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    // An empty shard is fine in a split that has rows; alone it is an error.
    let shards = dir.path().join("shards/data");
    std::fs::create_dir_all(&shards).unwrap();
    for (from, to) in [
        ("verl_train.parquet", "train-00000-of-00002.parquet"),
        ("verl_empty.parquet", "train-00001-of-00002.parquet"),
    ] {
        std::fs::copy(data(from), shards.join(to)).unwrap();
    }
    let d = Dataset::open(dir.path().join("shards"), &Columns::default(), "train").unwrap();
    assert_eq!(d.len(), 9);
    let err = open("verl_empty.parquet", "train").unwrap_err();
    assert!(matches!(err, DatasetError::NoRows { .. }), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = Dataset::open(&empty, &Columns::default(), "train")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no files of split `train`"), "{err}");
}
