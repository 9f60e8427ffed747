//! The Kubernetes manifests in `deploy/` checked against this binary's
//! command line, so that they cannot drift from it: every container runs
//! `meter` with a subcommand and flags the CLI accepts (parsed by the CLI
//! itself, once per completion index of an Indexed Job, with `$(VAR)`
//! expanded as Kubernetes expands it), every variable it sets is one meter
//! reads (or one the manifest itself refers to), and an Indexed Job's
//! `--shard I/N` has N equal to its completions.

use clap::{CommandFactory, Parser};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{Cli, Job};

/// The variables meter reads besides its flags' `env` (the object store's
/// credentials, region and endpoint; Stripe's key; the store's retries).
fn read_by_meter(name: &str) -> bool {
    ["AWS_", "GOOGLE_", "AZURE_"]
        .iter()
        .any(|p| name.starts_with(p))
        || name == "STRIPE_API_KEY"
        || name == meter::lake::store::MAX_RETRIES_VAR
}

/// The pod-index annotation an Indexed Job's pods carry.
const INDEX_FIELD: &str = "metadata.annotations['batch.kubernetes.io/job-completion-index']";

/// One container of a manifest, as the checks need it.
#[derive(Debug)]
struct Container {
    /// `<file>: <kind> <name>, container <name>`, for messages.
    place: String,
    command: Vec<String>,
    args: Vec<String>,
    /// (name, literal value, or none for the pod index).
    env: Vec<(String, Option<String>)>,
    /// An Indexed Job's completions.
    indexes: Option<u64>,
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .map(|s| match s {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The containers of every Job and CronJob in `text` (a manifest file).
fn containers(file: &str, text: &str) -> Result<Vec<Container>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mut out = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let job = match kind {
            "Job" => &doc["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"],
            _ => continue,
        };
        let indexes = (job["completionMode"].as_str() == Some("Indexed"))
            .then(|| job["completions"].as_i64().unwrap_or(0) as u64);
        let pod = &job["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_vec().into_iter().flatten() {
                let mut env = Vec::new();
                for e in c["env"].as_vec().into_iter().flatten() {
                    let var = e["name"].as_str().unwrap_or_default().to_string();
                    let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                        (Yaml::String(v), _) => Some(v.clone()),
                        (_, Yaml::String(field)) if field == INDEX_FIELD => None,
                        _ => {
                            return Err(format!(
                                "{file}: {kind} {name}: variable {var} has neither a value nor the pod index"
                            ));
                        }
                    };
                    env.push((var, value));
                }
                out.push(Container {
                    place: format!(
                        "{file}: {kind} {name}, container {}",
                        c["name"].as_str().unwrap_or("?")
                    ),
                    command: strings(&c["command"]),
                    args: strings(&c["args"]),
                    env,
                    indexes,
                });
            }
        }
    }
    Ok(out)
}

/// `text` with every `$(NAME)` replaced from `vars`, as Kubernetes expands
/// command, args and env values; a name not in `vars` is an error (where
/// Kubernetes would pass it on as it is).
fn expand(text: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(')')
            .ok_or_else(|| format!("unclosed $( in {text:?}"))?;
        let name = &rest[start + 2..start + end];
        let (_, value) = vars
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("$({name}) in {text:?} is no variable of the container"))?;
        out.push_str(value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `env` of every flag of subcommand `sub` (and the global ones), with
/// the flag's long name.
fn flag_vars(sub: &str) -> Vec<(String, String)> {
    let cli = Cli::command();
    let mut vars = Vec::new();
    let commands = [Some(&cli), cli.find_subcommand(sub)];
    for arg in commands
        .into_iter()
        .flatten()
        .flat_map(|c| c.get_arguments())
    {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            vars.push((env.to_string_lossy().into_owned(), long.to_string()));
        }
    }
    vars
}

/// Every problem of one container.
fn check(c: &Container) -> Vec<String> {
    let mut problems = Vec::new();
    let mut say = |p: String| problems.push(format!("{}: {p}", c.place));
    if c.command != ["meter"] {
        say(format!("command {:?}: expected [\"meter\"]", c.command));
        return problems;
    }
    let Some(sub) = c.args.first() else {
        say("no subcommand in args".into());
        return problems;
    };
    let flags = flag_vars(sub);
    let referenced = |name: &str| {
        let r = format!("$({name})");
        c.args.iter().any(|a| a.contains(&r))
            || c.env
                .iter()
                .any(|(_, v)| v.as_deref().is_some_and(|v| v.contains(&r)))
    };
    for (name, _) in &c.env {
        if !(flags.iter().any(|(env, _)| env == name) || read_by_meter(name) || referenced(name)) {
            say(format!(
                "variable {name} is read by no flag of `meter {sub}` and used by nothing in the manifest"
            ));
        }
    }
    let indexes: Vec<Option<u64>> = match c.indexes {
        Some(n) => (0..n).map(Some).collect(),
        None => vec![None],
    };
    let mut dates = std::collections::BTreeSet::new();
    for index in indexes {
        let mut vars: Vec<(String, String)> = Vec::new();
        for (name, value) in &c.env {
            let value = match (value, index) {
                (Some(v), _) => expand(v, &vars),
                (None, Some(i)) => Ok(i.to_string()),
                (None, None) => Err(format!(
                    "{name}: the pod index, in a Job that is not Indexed"
                )),
            };
            match value {
                Ok(v) => vars.push((name.clone(), v)),
                Err(e) => say(e),
            }
        }
        let mut argv = vec!["meter".to_string()];
        for a in &c.args {
            match expand(a, &vars) {
                Ok(a) => argv.push(a),
                Err(e) => say(e),
            }
        }
        for (name, value) in &vars {
            if let Some((_, long)) = flags.iter().find(|(env, _)| env == name) {
                argv.push(format!("--{long}={value}"));
            }
        }
        let at = index.map(|i| format!(" (index {i})")).unwrap_or_default();
        let cli = match Cli::try_parse_from(&argv) {
            Ok(cli) => cli,
            Err(e) => {
                say(format!("{argv:?}{at}: {}", e.render()));
                continue;
            }
        };
        match (&cli.job, c.indexes, index) {
            (Job::Ingest(args), Some(n), Some(i)) => match args.shard {
                Some(s) if u64::from(s.count) == n && u64::from(s.index) == i => {}
                other => say(format!(
                    "index {i} of {n} ingests shard {other:?}: an Indexed Job of N completions must run --shard $(JOB_COMPLETION_INDEX)/N"
                )),
            },
            (Job::Rollup(args), Some(_), Some(i))
                if !args.date.is_some_and(|d| dates.insert(d)) =>
            {
                say(format!(
                    "index {i} rolls up {:?}, not a date of its own",
                    args.date
                ));
            }
            _ => {}
        }
    }
    problems
}

/// Every problem of every manifest in `files` (name, text).
fn check_all(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, text) in files {
        match containers(file, text) {
            Ok(cs) if cs.is_empty() => problems.push(format!("{file}: no Job or CronJob")),
            Ok(cs) => problems.extend(cs.iter().flat_map(check)),
            Err(e) => problems.push(e),
        }
    }
    problems
}

fn deploy_files() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = format!("deploy/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_manifests_in_deploy_run_commands_the_binary_accepts() {
    let files = deploy_files();
    let problems = check_all(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The fan-out is all there: shards, rollups per date, the month's
    // billing, and the nightly.
    let all: Vec<Container> = files
        .iter()
        .flat_map(|(f, t)| containers(f, t).unwrap())
        .collect();
    let runs = |sub: &str, flag: &str, indexed: bool| {
        all.iter().any(|c| {
            c.args.first().is_some_and(|a| a == sub)
                && c.args.iter().any(|a| a.starts_with(flag))
                && c.indexes.is_some() == indexed
        })
    };
    assert!(runs("ingest", "--shard=$(JOB_COMPLETION_INDEX)/", true));
    assert!(runs("rollup", "--date=", true));
    assert!(runs("rollup", "--from-days", false));
    assert!(runs("bill", "--month", false));
    assert!(files.iter().any(|(_, t)| t.contains("kind: CronJob")) && runs("nightly", "", false));
}

#[test]
fn a_manifest_that_drifted_from_the_cli_is_caught() {
    let job = |completions: u32, args: &str, env: &str| {
        format!(
            "apiVersion: batch/v1
kind: Job
metadata: {{name: t}}
spec:
  completionMode: Indexed
  completions: {completions}
  template:
    spec:
      containers:
        - name: meter
          command: [meter]
          args: {args}
          env:
            - name: JOB_COMPLETION_INDEX
              valueFrom: {{fieldRef: {{fieldPath: \"{INDEX_FIELD}\"}}}}
{env}"
        )
    };
    let problems = |text: String| check_all(&[("t.yaml".into(), text)]);
    let good = job(4, "[ingest, \"--shard=$(JOB_COMPLETION_INDEX)/4\"]", "");
    assert_eq!(problems(good), Vec::<String>::new());
    let cases = [
        // A flag the CLI does not have.
        (
            job(4, "[ingest, \"--shards=$(JOB_COMPLETION_INDEX)/4\"]", ""),
            "--shards",
        ),
        // More pods than shards: index 4 of --shard 4/4 is refused.
        (
            job(5, "[ingest, \"--shard=$(JOB_COMPLETION_INDEX)/4\"]", ""),
            "index 4",
        ),
        // Fewer pods than shards: shard 3/4 would never run.
        (
            job(3, "[ingest, \"--shard=$(JOB_COMPLETION_INDEX)/4\"]", ""),
            "must run --shard",
        ),
        // A variable no flag reads (a typo).
        (
            job(
                4,
                "[ingest, \"--shard=$(JOB_COMPLETION_INDEX)/4\"]",
                "            - {name: METER_LAKES, value: s3://b/lake}\n",
            ),
            "METER_LAKES",
        ),
        // A variable of another subcommand's flag.
        (
            job(
                4,
                "[ingest, \"--shard=$(JOB_COMPLETION_INDEX)/4\"]",
                "            - {name: METER_OUT, value: s3://b/out}\n",
            ),
            "METER_OUT",
        ),
        // A variable's value the flag refuses (index 3 of 3 shards).
        (
            job(
                4,
                "[ingest]",
                "            - {name: METER_SHARD, value: \"$(JOB_COMPLETION_INDEX)/3\"}\n",
            ),
            "is not a shard",
        ),
        // A reference to nothing.
        (
            job(
                4,
                "[rollup, \"--date=$(MONTH_START)+$(JOB_COMPLETION_INDEX)\"]",
                "",
            ),
            "$(MONTH_START)",
        ),
        // Every pod rolling up the same date.
        (
            job(2, "[rollup, --date=2026-11-01]", ""),
            "not a date of its own",
        ),
        // A subcommand that does not exist.
        (job(1, "[ingets]", ""), "ingets"),
    ];
    for (text, expected) in cases {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected}: {found:?}"
        );
    }
}
