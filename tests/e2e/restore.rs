//! Back up a tree of hostile names, browse it through the gate in both URL forms, restore it,
//! and compare the bytes. Every request-target is checked byte for byte where the stand-in can
//! show what it received; against the real image the listings themselves are the proof (a
//! decoded `%2B` in `time` or `%26` in `filter` changes the answer).

use std::collections::BTreeSet;

use harness::api::Api;
use harness::client::Request;
use harness::duplicati::{Duplicati, Flavor};
use harness::legacy_api::LegacyApi;
use harness::serde_json::Value;
use harness::stack::{self, StackOptions, GATE_HOST};
use harness::tree::{Tree, SOURCE_ROOT};
use harness::{bail, ensure, Error, Result};

const RESTORE_PATH: &str = "/backups/restored/";

/// Asserts the stand-in received each target byte-exact, with the client's Host, through the
/// gate. Against the real image there is no request log: say so instead of pretending.
fn assert_received_verbatim(duplicati: &Duplicati, targets: &[String]) -> Result<()> {
    let Some(log) = duplicati.recorded_requests()? else {
        eprintln!(
            "(real Duplicati: no request log; byte-exactness shown by {} listings that matched the source)",
            targets.len()
        );
        return Ok(());
    };
    let want_host = format!("{GATE_HOST}:{}", harness::gate::HTTPS_PORT);
    for target in targets {
        let seen = log
            .iter()
            .find(|r| r.get("target").and_then(Value::as_str) == Some(target.as_str()));
        let Some(seen) = seen else {
            let got: Vec<&str> = log
                .iter()
                .filter_map(|r| r.get("target").and_then(Value::as_str))
                .filter(|t| t.contains("/files"))
                .collect();
            bail!("Duplicati never received the target byte-exact:\n  sent {target}\n  received /files targets: {got:#?}");
        };
        ensure!(
            seen.get("host").and_then(Value::as_str) == Some(want_host.as_str()),
            "Host was not passed through for {target}: {seen}"
        );
    }
    Ok(())
}

fn compare_listing(folder: &str, answer: &Value, tree: &Tree) -> Result<()> {
    let got: BTreeSet<String> = Api::paths(answer)?.into_iter().collect();
    let want = tree.children(folder);
    ensure!(
        got == want,
        "listing of {folder:?} differs\n  missing: {:?}\n  unexpected: {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    Ok(())
}

fn first_fileset_time(filesets: &[Value]) -> Result<String> {
    filesets
        .first()
        .and_then(|f| f.get("Time"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::msg(format!("no fileset with a Time: {filesets:?}")))
}

/// Duplicati restores to `restore_path` relative to the common prefix (`/source/`); accept the
/// tree either there or under `source/`, and compare every byte.
fn compare_restored(duplicati: &Duplicati, tree: &Tree) -> Result<()> {
    let root = duplicati.backups_dir.join("restored");
    let mut restored = Tree::read(&root)?;
    if !restored.keys().any(|k| tree.files.contains_key(k)) {
        restored = Tree::read(&root.join("source"))?;
    }
    tree.compare(&restored)?;
    eprintln!(
        "restored {} files byte-identical to the source",
        restored.len()
    );
    Ok(())
}

#[test]
fn restore_tree_with_hostile_names_through_the_gate() {
    stack::run(
        "restore_tree_with_hostile_names_through_the_gate",
        StackOptions::default(),
        |s| {
            let tree = Tree::hostile();
            tree.write(&s.duplicati.source_dir)?;
            let endpoint = s.gate_endpoint()?;
            let password = s.password.clone();
            let passphrase = harness::random::alphanumeric(24)?;
            s.duplicati.clear_recorded_requests()?;

            let tree_ref = &tree;
            let targets = s.client(move || -> Result<Vec<String>> {
                let mut api = Api::new(endpoint);
                api.login(&password)?;
                let id = api.create_backup("dgate-e2e", &passphrase)?;
                api.run_backup(&id)?;
                let filesets = api.filesets(&id)?;
                let time = first_fileset_time(&filesets)?;
                ensure!(
                    time.contains('+') || time.ends_with('Z'),
                    "fileset Time without an offset: {time}"
                );

                let mut targets = vec![Api::list_roots_target(&id, &time)];
                let roots = Api::paths(&api.expect_json(Request::new("GET", &targets[0]))?)?;
                ensure!(
                    roots == [SOURCE_ROOT],
                    "roots should be [{SOURCE_ROOT:?}], got {roots:?}"
                );
                for folder in tree_ref.folders() {
                    let target = Api::list_folder_target(&id, &time, &folder);
                    let answer = api.expect_json(Request::new("GET", &target))?;
                    compare_listing(&folder, &answer, tree_ref)?;
                    targets.push(target);
                }
                api.restore_all(&id, &time, RESTORE_PATH, &passphrase)?;
                Ok(targets)
            })??;
            eprintln!(
                "browsed {} folders in the 2.1+ form (filter=%40%2F…, time=…%2B…)",
                targets.len() - 1
            );
            assert_received_verbatim(&s.duplicati, &targets)?;
            compare_restored(&s.duplicati, &tree)
        },
    );
}

/// Duplicati 2.0's restore browser puts the folder in the path as `%2F…`: the Apache failure
/// (duplicati#2531) the gate must not repeat. Only the stand-in has a 2.0 profile, so this runs
/// against it even when `DUPLICATI_IMAGE` is set.
#[test]
fn legacy_2_0_encoded_slash_paths_through_the_gate() {
    let opts = StackOptions {
        flavor: Flavor::StandIn { legacy: true },
        ..StackOptions::default()
    };
    stack::run(
        "legacy_2_0_encoded_slash_paths_through_the_gate",
        opts,
        |s| {
            let tree = Tree::hostile();
            tree.write(&s.duplicati.source_dir)?;
            let endpoint = s.gate_endpoint()?;
            let password = s.password.clone();
            let passphrase = harness::random::alphanumeric(24)?;
            s.duplicati.clear_recorded_requests()?;

            let tree_ref = &tree;
            let targets = s.client(move || -> Result<Vec<String>> {
            let mut api = LegacyApi::new(endpoint);
            api.login(&password)?;
            let created = api.expect_json(
                Request::new("POST", "/api/v1/backups").json(&harness::serde_json::json!({"Backup": {
                    "Name": "dgate-e2e-legacy",
                    "TargetURL": "file:///backups/dgate-e2e-legacy/",
                    "Sources": [SOURCE_ROOT],
                    "Settings": [{"Name": "passphrase", "Value": passphrase}],
                    "Filters": [],
                    "Metadata": {}
                }})),
            )?;
            let id = json_id(&created, "ID")?;
            let run = api.expect_json(Request::new("POST", &format!("/api/v1/backup/{id}/run")))?;
            let task = json_id(&run, "ID")?;
            wait_legacy_task(&mut api, &task)?;
            let filesets = api.expect_json(Request::new("GET", &format!("/api/v1/backup/{id}/filesets")))?;
            let time = first_fileset_time(filesets.as_array().map(Vec::as_slice).unwrap_or(&[]))?;

            let mut targets = Vec::new();
            for folder in tree_ref.folders() {
                for with_filter in [true, false] {
                    let target = LegacyApi::list_folder_target(&id, &time, &folder, with_filter);
                    let answer = api.expect_json(Request::new("GET", &target))?;
                    compare_listing(&folder, &answer, tree_ref)
                        .map_err(|e| Error::msg(format!("{e}\n  target: {target}")))?;
                    targets.push(target);
                }
            }
            let restore = api.expect_json(
                Request::new("POST", &format!("/api/v1/backup/{id}/restore")).json(&harness::serde_json::json!({
                    "paths": null, "time": time, "restore_path": RESTORE_PATH, "overwrite": true,
                    "permissions": false, "skip_metadata": false, "passphrase": passphrase
                })),
            )?;
            wait_legacy_task(&mut api, &json_id(&restore, "ID")?)?;
            Ok(targets)
        })??;
            eprintln!(
                "browsed {} folders in the 2.0 form (files/%2Fsource%2F…), with and without filter",
                targets.len() / 2
            );
            assert_received_verbatim(&s.duplicati, &targets)?;
            compare_restored(&s.duplicati, &tree)
        },
    );
}

fn json_id(v: &Value, key: &str) -> Result<String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => bail!("no {key} in {v}"),
    }
}

fn wait_legacy_task(api: &mut LegacyApi, task: &str) -> Result<()> {
    // Same deadline as the 2.1+ client: the stand-in finishes in milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let state = api.expect_json(Request::new("GET", &format!("/api/v1/task/{task}")))?;
        match state.get("Status").and_then(Value::as_str) {
            Some("Completed") => return Ok(()),
            Some("Failed") => bail!("task {task} failed: {state}"),
            _ if std::time::Instant::now() > deadline => {
                bail!("task {task} never finished: {state}")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    }
}
