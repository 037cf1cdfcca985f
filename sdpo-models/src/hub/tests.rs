use std::path::{Path, PathBuf};

use sha2::Digest;

use super::*;

const SHARDED: &str = "llama_tied_sharded";
const SHARD_2: &str = "model-00002-of-00003.safetensors";

fn fixture_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// A repo folder: a fixture model's files plus a tokenizer.json (content irrelevant here).
fn repo_folder(root: &Path, model: &str, config_note: &str) -> PathBuf {
    let dir = root.join(format!("{model}-{config_note}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_model(model)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = config.replacen('{', &format!("{{\"_note\": \"{config_note}\","), 1);
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    dir
}

struct Setup {
    hub: FixtureHub,
    root: tempfile::TempDir,
    settings: HubSettings,
}

fn setup() -> Setup {
    let hub = FixtureHub::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let folder = repo_folder(root.path(), SHARDED, "main");
    hub.add_repo("org/sharded", "main", &folder).unwrap();
    let mut settings = HubSettings::new(hub.endpoint(), root.path().join("cache"));
    settings.retries = 2;
    Setup {
        hub,
        root,
        settings,
    }
}

fn model(text: &str) -> HubModel {
    HubModel::parse(text).unwrap()
}

#[test]
fn ids_parse_with_file_and_revision_and_print_back() {
    let m = model("Qwen/Qwen2.5-0.5B-Instruct");
    assert_eq!(
        (m.id.as_str(), m.revision(), m.file.as_deref()),
        ("Qwen/Qwen2.5-0.5B-Instruct", "main", None)
    );
    let m = model("org/repo-GGUF:sub/model.Q4_K_M.gguf@v1.0");
    assert_eq!(m.id, "org/repo-GGUF");
    assert_eq!(m.file.as_deref(), Some("sub/model.Q4_K_M.gguf"));
    assert_eq!(m.revision(), "v1.0");
    assert_eq!(m.to_string(), "org/repo-GGUF:sub/model.Q4_K_M.gguf@v1.0");
    assert_eq!(model("gpt2").id, "gpt2");
    for bad in [
        "a/b/c",
        "org/",
        "/x",
        "org/na me",
        "org/-x",
        "org/x..y",
        "org/x@",
        "org/x:",
        "org/x:../y",
        "org/x:/abs",
    ] {
        assert!(
            matches!(HubModel::parse(bad), Err(HubError::InvalidId { .. })),
            "{bad} parsed"
        );
    }
}

#[test]
fn downloads_the_model_files_and_every_shard_then_reuses_the_cache() {
    let s = setup();
    let got = resolve(&model("org/sharded"), &s.settings).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "generation_config.json",
        INDEX_FILE,
        SHARD_2,
    ] {
        let local = got.path.join(file);
        let served = s.root.path().join(format!("{SHARDED}-main")).join(file);
        assert_eq!(
            std::fs::read(&local).unwrap(),
            std::fs::read(served).unwrap(),
            "{file}"
        );
    }
    assert!(
        !got.path.join("reference.safetensors").exists(),
        "only what loading needs"
    );
    // Python's layout: refs/main holds the commit, the snapshot links into blobs/.
    let repo_dir = s.settings.cache_dir.join("models--org--sharded");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        got.commit
    );
    assert_eq!(got.path, repo_dir.join("snapshots").join(&got.commit));
    assert!(std::fs::symlink_metadata(got.path.join(SHARD_2))
        .unwrap()
        .is_symlink());
    assert!(!repo_dir.join("refs").join(&got.commit).exists());

    let requests = s.hub.requests().len();
    let again = resolve(&model("org/sharded"), &s.settings).unwrap();
    assert_eq!(again, got);
    assert_eq!(s.hub.downloads(SHARD_2), 1, "no second download");
    assert_eq!(
        s.hub.requests().len(),
        requests + 1,
        "only the listing: {:?}",
        s.hub.requests()
    );
}

#[test]
fn a_revision_or_a_commit_selects_that_snapshot() {
    let s = setup();
    let v1 = repo_folder(s.root.path(), SHARDED, "v1");
    let commit_v1 = s.hub.add_repo("org/sharded", "v1", &v1).unwrap();
    let main = resolve(&model("org/sharded"), &s.settings).unwrap();
    let tagged = resolve(&model("org/sharded@v1"), &s.settings).unwrap();
    assert_eq!(tagged.commit, commit_v1);
    assert_ne!(tagged.path, main.path);
    let config = std::fs::read_to_string(tagged.path.join("config.json")).unwrap();
    assert!(config.contains("\"_note\": \"v1\""), "{config}");
    let by_commit = resolve(&model(&format!("org/sharded@{commit_v1}")), &s.settings).unwrap();
    assert_eq!(by_commit.path, tagged.path);
    let refs = s.settings.cache_dir.join("models--org--sharded/refs");
    assert_eq!(std::fs::read_to_string(refs.join("v1")).unwrap(), commit_v1);
    assert!(!refs.join(&commit_v1).exists(), "no ref named by a commit");
}

#[test]
fn missing_repos_revisions_and_files_name_what_is_missing() {
    let s = setup();
    let err = resolve(&model("org/nothing"), &s.settings).unwrap_err();
    assert!(
        err.to_string().starts_with("repo org/nothing not found"),
        "{err}"
    );
    let err = resolve(&model("org/sharded@v9"), &s.settings).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("revision v9 of repo org/sharded not found"),
        "{err}"
    );
    let err = resolve(&model("org/sharded:model.gguf"), &s.settings).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::NotAModel { .. }), "{text}");
    assert!(
        text.contains("no file model.gguf") && text.contains("config.json"),
        "{text}"
    );

    // A repo of GGUF files named without a file: the error says how to name one.
    let gguf_dir = s.root.path().join("gguf");
    std::fs::create_dir_all(&gguf_dir).unwrap();
    std::fs::write(gguf_dir.join("m.Q4_0.gguf"), b"GGUF").unwrap();
    s.hub.add_repo("org/m-GGUF", "main", &gguf_dir).unwrap();
    let text = resolve(&model("org/m-GGUF"), &s.settings)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("no config.json") && text.contains("org/m-GGUF:m.Q4_0.gguf"),
        "{text}"
    );
    let file = resolve(&model("org/m-GGUF:m.Q4_0.gguf"), &s.settings).unwrap();
    assert_eq!(std::fs::read(&file.path).unwrap(), b"GGUF");
    assert!(file.path.ends_with("m.Q4_0.gguf"));
}

#[test]
fn a_download_broken_midway_is_resumed_or_fails_without_a_half_file() {
    let s = setup();
    s.hub.break_downloads(SHARD_2, 1);
    let got = resolve(&model("org/sharded"), &s.settings).unwrap();
    let served = s.root.path().join(format!("{SHARDED}-main")).join(SHARD_2);
    assert_eq!(
        std::fs::read(got.path.join(SHARD_2)).unwrap(),
        std::fs::read(&served).unwrap()
    );
    assert_eq!(s.hub.downloads(SHARD_2), 2, "one broken, one resumed");

    // Broken every time: a clear error, nothing half-written in the snapshot or the blobs.
    let s = setup();
    s.hub.break_downloads(SHARD_2, 100);
    let err = resolve(&model("org/sharded"), &s.settings).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::Download { .. }), "{text}");
    assert!(
        text.contains(SHARD_2) && text.contains("org/sharded") && text.contains("retries"),
        "{text}"
    );
    let repo_dir = s.settings.cache_dir.join("models--org--sharded");
    let snapshot = std::fs::read_dir(repo_dir.join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!snapshot.join(SHARD_2).exists());
    assert!(
        !repo_dir.join("refs/main").exists(),
        "the revision is not recorded"
    );
    let etag: String = sha2::Sha256::digest(std::fs::read(&served).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let blobs = repo_dir.join("blobs");
    assert!(!blobs.join(&etag).exists(), "no blob of the broken file");
    assert!(
        blobs.join(format!("{etag}.part")).exists(),
        "its partial download is kept"
    );
    // Healed: the next run completes.
    s.hub.break_downloads(SHARD_2, 0);
    let got = resolve(&model("org/sharded"), &s.settings).unwrap();
    assert_eq!(
        std::fs::read(got.path.join(SHARD_2)).unwrap(),
        std::fs::read(&served).unwrap()
    );
}

#[test]
fn offline_mode_uses_the_cache_only_and_names_a_missing_file() {
    let s = setup();
    let mut offline = s.settings.clone();
    offline.offline = true;
    let err = resolve(&model("org/sharded"), &offline).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::NotCached { .. }), "{text}");
    assert!(
        text.contains("revision main of repo org/sharded") && text.contains("refs/main"),
        "{text}"
    );

    let online = resolve(&model("org/sharded"), &s.settings).unwrap();
    let requests = s.hub.requests().len();
    assert_eq!(resolve(&model("org/sharded"), &offline).unwrap(), online);
    assert_eq!(s.hub.requests().len(), requests, "offline asks nothing");

    std::fs::remove_file(online.path.join(SHARD_2)).unwrap();
    let text = resolve(&model("org/sharded"), &offline)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(SHARD_2) && text.contains("HF_HUB_OFFLINE"),
        "{text}"
    );
}

#[test]
fn a_gated_repo_needs_the_token() {
    let s = setup();
    s.hub.require_token("org/sharded", "hf_secret");
    let err = resolve(&model("org/sharded"), &s.settings).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{text}"
    );
    assert!(text.contains("HF_TOKEN"), "{text}");
    let mut with_token = s.settings.clone();
    with_token.token = Some("hf_secret".into());
    resolve(&model("org/sharded"), &with_token).unwrap();
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let err = resolve(&model("org/x"), &HubSettings::new(endpoint, dir.path())).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::Unreachable { .. }), "{text}");
    assert!(text.contains("HF_HUB_OFFLINE"), "{text}");
}

/// Not a test: serves folder `HUB_FIXTURE_DIR` as repo `HUB_FIXTURE_REPO` for
/// `HUB_FIXTURE_SECS` seconds, writing the endpoint to `HUB_FIXTURE_ENDPOINT_FILE`, for
/// `scripts/check_hub_cache_python.sh` (Python's `huggingface_hub` against the same server
/// and cache) and for trying the failure cases by hand: `HUB_FIXTURE_TOKEN` makes the repo
/// gated, `HUB_FIXTURE_BREAK=FILE` breaks every download of that file midway.
#[test]
#[ignore = "a server for scripts/check_hub_cache_python.sh"]
fn serve_a_folder_for_the_python_cache_check() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let hub = FixtureHub::start().unwrap();
    let dir = PathBuf::from(var("HUB_FIXTURE_DIR"));
    let repo = var("HUB_FIXTURE_REPO");
    hub.add_repo(&repo, "main", &dir).unwrap();
    if let Ok(token) = std::env::var("HUB_FIXTURE_TOKEN") {
        hub.require_token(&repo, &token);
    }
    if let Ok(file) = std::env::var("HUB_FIXTURE_BREAK") {
        hub.break_downloads(&file, usize::MAX);
    }
    std::fs::write(var("HUB_FIXTURE_ENDPOINT_FILE"), hub.endpoint()).unwrap();
    let secs: u64 = var("HUB_FIXTURE_SECS").parse().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(secs));
}
