//! The files in `deploy/` against the real `tessera` binary and `node/src/config.rs`: no Docker
//! or Kubernetes runs here, so what can be checked without them is checked here. Every flag
//! passed to `tessera serve` (or `tessera cert`) must be one `--help` lists; every `TESSERA_*`
//! variable must be one the node reads; the YAML must be well formed and consistent (distinct
//! node ids, exactly one node that bootstraps, joins aimed at it); the Kubernetes start script
//! is run for each pod ordinal with a stand-in `tessera`; the swarm script parses and answers.
//! docs/deploy.md is held to the same flags and variables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tessera_chaos::deploy_lint::{
    FOREIGN_FLAGS, FlagContext, TOOL_VARS, at, compose_env, config_file_keys, flag_uses,
    help_env_names, help_flags, source_env_names, tessera_vars, toml_top_keys, yaml,
};
use tessera_chaos::process::run_bounded;
use tessera_tests::phase;

const CMD_TIMEOUT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("chaos/ sits in the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Files of `deploy/<dir>` ending in one of `exts`, as paths relative to the repository.
fn files_in(dir: &str, exts: &[&str]) -> Vec<String> {
    let p = repo().join("deploy").join(dir);
    let mut out: Vec<String> = std::fs::read_dir(&p)
        .unwrap_or_else(|e| panic!("list {}: {e}", p.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| exts.iter().any(|x| n.ends_with(x)))
        .map(|n| format!("deploy/{dir}/{n}"))
        .collect();
    out.sort();
    out
}

fn tessera_help(args: &[&str]) -> String {
    let bin = tessera_tests::tessera_bin().expect("the tessera binary (cargo build --bins)");
    let out = run_bounded(Command::new(bin).args(args), CMD_TIMEOUT).expect("run tessera --help");
    assert!(out.status.success(), "tessera {args:?}: {}", out.stderr);
    out.stdout
}

/// What the deploy files may name: flags per command, and the node's variables.
struct Known {
    serve: BTreeSet<String>,
    cert: BTreeSet<String>,
    env_help: BTreeSet<String>,
    env_source: BTreeSet<String>,
}

fn known() -> Known {
    let serve_help = tessera_help(&["serve", "--help"]);
    let mut cert = help_flags(&tessera_help(&["cert", "ca", "--help"]));
    cert.extend(help_flags(&tessera_help(&["cert", "node", "--help"])));
    let k = Known {
        serve: help_flags(&serve_help),
        cert,
        env_help: help_env_names(&serve_help),
        env_source: source_env_names(&read("node/src/config.rs")),
    };
    // the two readings must agree, or one of them reads nothing
    assert_eq!(
        k.env_help, k.env_source,
        "TESSERA_* names of `tessera serve --help` and of node/src/config.rs differ"
    );
    for f in [
        "--node-id",
        "--p2p-addr",
        "--tls-dir",
        "--bootstrap",
        "--join",
    ] {
        assert!(k.serve.contains(f), "serve --help lists {f}: {:?}", k.serve);
    }
    k
}

/// Every flag and variable of `rel` checked against `k`; problems as `file:line: ...`.
fn check_names(rel: &str, text: &str, k: &Known, problems: &mut Vec<String>) -> (usize, usize) {
    let mut serve_flags = 0;
    for u in flag_uses(text) {
        let ok = match u.context {
            FlagContext::Serve => {
                serve_flags += 1;
                k.serve.contains(&u.flag)
            }
            FlagContext::Cert => k.cert.contains(&u.flag),
            FlagContext::Other => {
                k.serve.contains(&u.flag)
                    || k.cert.contains(&u.flag)
                    || FOREIGN_FLAGS.contains(&u.flag.as_str())
            }
        };
        if !ok {
            problems.push(format!(
                "{rel}:{}: {} is not a flag of {} (if it belongs to another program, add it \
                 to deploy_lint::FOREIGN_FLAGS)",
                u.line,
                u.flag,
                match u.context {
                    FlagContext::Serve => "`tessera serve`",
                    FlagContext::Cert => "`tessera cert`",
                    FlagContext::Other => "tessera or a known program",
                }
            ));
        }
    }
    let vars = tessera_vars(text);
    for (line, name) in &vars {
        if TOOL_VARS.contains(&name.as_str()) {
            continue;
        }
        if !k.env_source.contains(name) {
            problems.push(format!(
                "{rel}:{line}: {name} is not read by the node (node/src/config.rs)"
            ));
        }
        if !k.env_help.contains(name) {
            problems.push(format!(
                "{rel}:{line}: {name} is not in `tessera serve --help`"
            ));
        }
    }
    (serve_flags, vars.len())
}

#[test]
fn every_flag_and_variable_in_deploy_exists() {
    phase!("what the binary and config.rs know");
    let k = known();

    phase!("every deploy file, flags and TESSERA_* variables");
    let mut files = vec![
        "deploy/compose.yaml".to_owned(),
        "deploy/Dockerfile".to_owned(),
        "deploy/swarm.sh".to_owned(),
    ];
    files.extend(files_in("k8s", &[".yaml"]));
    files.extend(files_in("systemd", &[".service", ".env"]));
    // the guide shows commands too
    files.push("docs/deploy.md".to_owned());
    let mut problems = Vec::new();
    let mut found = BTreeMap::new();
    for rel in &files {
        let counts = check_names(rel, &read(rel), &k, &mut problems);
        found.insert(rel.clone(), counts);
    }
    assert!(
        problems.is_empty(),
        "deploy files:\n{}",
        problems.join("\n")
    );

    phase!("the checks saw the commands and variables they are meant to see");
    let serve = |f: &str| found[f].0;
    let vars = |f: &str| found[f].1;
    assert!(serve("deploy/swarm.sh") >= 5, "{found:?}");
    assert!(serve("deploy/systemd/tessera.service") >= 2, "{found:?}");
    assert!(serve("deploy/k8s/configmap.yaml") >= 3, "{found:?}");
    assert!(vars("deploy/compose.yaml") >= 15, "{found:?}");
    assert!(vars("deploy/Dockerfile") >= 3, "{found:?}");
    assert!(vars("deploy/systemd/tessera.env") >= 5, "{found:?}");
    assert!(
        serve("docs/deploy.md") >= 2 && vars("docs/deploy.md") >= 10,
        "{found:?}"
    );
}

#[test]
fn a_misspelt_flag_or_variable_is_caught() {
    // the check proves itself: known-bad text must produce problems
    let k = known();
    let mut problems = Vec::new();
    check_names(
        "bad",
        "tessera serve --node-id 1 --p2p-adr 127.0.0.1:1\nTESSERA_NODEID=2\n\
         tessera cert node --bootstrap\n- --made-up-flag\nTESSERA_BIN=x\n",
        &k,
        &mut problems,
    );
    let text = problems.join("\n");
    assert_eq!(problems.len(), 5, "{text}");
    for bad in [
        "--p2p-adr",
        "TESSERA_NODEID",
        "--bootstrap",
        "--made-up-flag",
    ] {
        assert!(text.contains(bad), "{bad} not caught:\n{text}");
    }
}

fn parse_yaml(rel: &str) -> Vec<Value> {
    yaml::parse_documents(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e:#}"))
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .unwrap_or_else(|e| panic!("{e:#} in {v}"))
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a scalar in {v}"))
}

#[test]
fn compose_has_distinct_ids_one_bootstrap_and_joins_aimed_at_it() {
    phase!("compose.yaml parses");
    let docs = parse_yaml("deploy/compose.yaml");
    assert_eq!(docs.len(), 1);
    let services = docs[0]["services"]
        .as_object()
        .expect("compose has services");

    phase!("nodes: distinct ids, addresses and host ports; one bootstrap; joins aimed at it");
    let mut ids = BTreeSet::new();
    let mut p2p = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let mut bootstraps = Vec::new();
    let mut joins = Vec::new();
    for (name, svc) in services {
        let Ok(env) = compose_env(svc) else { continue };
        let Some(id) = env.get("TESSERA_NODE_ID") else {
            continue;
        };
        let id: u64 = id.parse().expect("TESSERA_NODE_ID is a number");
        assert!(
            id > 0 && ids.insert(id),
            "{name}: node id {id} repeats or is 0"
        );
        let addr: SocketAddr = env["TESSERA_P2P_ADDR"]
            .parse()
            .expect("TESSERA_P2P_ADDR is IP:port, as --p2p-addr parses it");
        assert!(p2p.insert(addr), "{name}: p2p address {addr} repeats");
        assert_eq!(
            s(svc, "networks/tessera/ipv4_address"),
            addr.ip().to_string(),
            "{name}: the p2p address is the container's fixed address"
        );
        assert!(
            env["TESSERA_TLS_DIR"].ends_with(&format!("/{name}")),
            "{name}: its own certificate dir"
        );
        for p in svc["ports"].as_array().expect("ports") {
            let p = p.as_str().expect("port mapping");
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: {p} published beyond loopback"
            );
            assert!(host_ports.insert(p.split(':').nth(1).map(str::to_owned)));
        }
        match (env.get("TESSERA_BOOTSTRAP"), env.get("TESSERA_JOIN")) {
            (Some(b), None) if b == "true" => bootstraps.push((name.clone(), addr)),
            (None, Some(j)) => joins.push((
                name.clone(),
                j.parse::<SocketAddr>()
                    .expect("TESSERA_JOIN is IP:port, as --join parses it"),
            )),
            other => panic!("{name}: bootstrap xor join, got {other:?}"),
        }
    }
    assert_eq!(ids, BTreeSet::from([1, 2, 3]), "three nodes");
    assert_eq!(
        bootstraps.len(),
        1,
        "exactly one node bootstraps: {bootstraps:?}"
    );
    let (first, first_addr) = &bootstraps[0];
    for (name, j) in &joins {
        assert_eq!(j, first_addr, "{name} joins {first}");
        let deps = &services[name]["depends_on"];
        assert_eq!(s(deps, &format!("{first}/condition")), "service_healthy");
    }

    phase!("the cert job makes what the nodes mount");
    let certs = services.get("certs").expect("a certs job");
    let script = certs["command"][0].as_str().expect("certs script");
    assert!(script.contains("tessera cert ca") && script.contains("tessera cert node"));
    assert_eq!(s(certs, "restart"), "no");
}

/// The Kubernetes documents by `kind/name`.
fn k8s_docs() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for rel in files_in("k8s", &[".yaml"]) {
        for d in parse_yaml(&rel) {
            let key = format!(
                "{}/{}",
                s(&d, "kind"),
                d["metadata"]["name"].as_str().unwrap_or("")
            );
            assert!(
                d.get("apiVersion").is_some(),
                "{rel}: {key} has no apiVersion"
            );
            assert!(out.insert(key.clone(), d).is_none(), "{key} twice");
        }
    }
    out
}

#[test]
fn kubernetes_manifests_fit_together() {
    phase!("every manifest parses; kustomization lists them all");
    let docs = k8s_docs();
    let kust = &docs["Kustomization/"];
    let listed: BTreeSet<String> = kust["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| format!("deploy/k8s/{}", r.as_str().expect("resource path")))
        .collect();
    let present: BTreeSet<String> = files_in("k8s", &[".yaml"])
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml"))
        .collect();
    assert_eq!(listed, present);

    phase!("statefulset: headless service, labels, ports, volumes");
    let sts = &docs["StatefulSet/tessera"];
    let svc_name = s(sts, "spec/serviceName");
    let headless = &docs[&format!("Service/{svc_name}")];
    assert_eq!(s(headless, "spec/clusterIP"), "None");
    assert_eq!(s(headless, "spec/publishNotReadyAddresses"), "true");
    let labels = at(sts, "spec/template/metadata/labels").expect("pod labels");
    assert_eq!(
        at(sts, "spec/selector/matchLabels").expect("selector"),
        labels
    );
    assert_eq!(
        at(headless, "spec/selector").expect("service selector"),
        labels
    );
    let pod = at(sts, "spec/template/spec").expect("pod spec");
    let container = &pod["containers"][0];
    let ports: BTreeSet<(String, String, String)> = container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .map(|p| {
            (
                s(p, "name").to_owned(),
                s(p, "containerPort").to_owned(),
                s(p, "protocol").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            ("http".into(), "6333".into(), "TCP".into()),
            ("grpc".into(), "6334".into(), "TCP".into()),
            ("p2p".into(), "6335".into(), "UDP".into()),
        ])
    );
    for p in headless["spec"]["ports"].as_array().expect("service ports") {
        assert!(
            ports
                .iter()
                .any(|(n, _, proto)| n == s(p, "targetPort") && proto == s(p, "protocol")),
            "service port {p} has no matching container port"
        );
    }
    let mut volumes: BTreeSet<String> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| s(v, "name").to_owned())
        .collect();
    for t in at(sts, "spec/volumeClaimTemplates")
        .expect("volumeClaimTemplates")
        .as_array()
        .expect("a list")
    {
        volumes.insert(s(t, "metadata/name").to_owned());
    }
    let mut containers = pod["containers"].as_array().expect("containers").clone();
    containers.extend(
        pod["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    for c in &containers {
        for m in c["volumeMounts"].as_array().expect("volumeMounts") {
            assert!(volumes.contains(s(m, "name")), "mount {m} of no volume");
        }
    }

    phase!("the ConfigMap's tessera.toml uses only config keys");
    let cm = &docs["ConfigMap/tessera"];
    let keys = config_file_keys(&read("node/src/config.rs")).expect("config keys");
    let toml = s(cm, "data/tessera.toml");
    let used = toml_top_keys(toml);
    assert!(used.len() >= 5, "{used:?}");
    for (line, key) in used {
        assert!(
            keys.contains(&key),
            "tessera.toml:{line}: {key} is not a config key"
        );
    }
    let cmd = container["command"].as_array().expect("command");
    assert_eq!(
        cmd.last().and_then(Value::as_str),
        Some("/etc/tessera/config/start.sh"),
        "the container runs the ConfigMap's script where it is mounted"
    );
}

#[test]
fn kubernetes_start_script_gives_each_pod_its_id_and_one_bootstrap() {
    let docs = k8s_docs();
    let sts = &docs["StatefulSet/tessera"];
    let replicas: u64 = s(sts, "spec/replicas").parse().expect("replicas");
    let service = s(sts, "spec/serviceName").to_owned();
    let script = s(&docs["ConfigMap/tessera"], "data/start.sh").to_owned();

    phase!("run start.sh per ordinal with stand-ins for tessera and getent");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir bin");
    let stub = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write stub");
        let st = Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .expect("chmod");
        assert!(st.success());
    };
    stub(
        "tessera",
        "echo \"node_id=$TESSERA_NODE_ID\"; echo \"p2p=$TESSERA_P2P_ADDR\"; echo \"args=$*\"",
    );
    // pod 0's stable name resolves; nothing else does
    stub(
        "getent",
        &format!(
            "[ \"$1 $2\" = \"hosts tessera-0.{service}.ns.svc\" ] || exit 2\n\
             echo \"10.0.0.10       tessera-0.{service}.ns.svc.cluster.local\""
        ),
    );
    let script_path = dir.path().join("start.sh");
    std::fs::write(&script_path, &script).expect("write start.sh");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ids = BTreeSet::new();
    let mut bootstraps = 0;
    for ordinal in 0..replicas {
        let pod_ip = if ordinal == 2 {
            "fd00::12".to_owned()
        } else {
            format!("10.0.0.{}", 10 + ordinal)
        };
        let out = run_bounded(
            Command::new("sh")
                .arg(&script_path)
                .env("PATH", &path)
                .env("POD_NAME", format!("tessera-{ordinal}"))
                .env("POD_IP", &pod_ip)
                .env("POD_NAMESPACE", "ns")
                .env("SERVICE_NAME", &service),
            CMD_TIMEOUT,
        )
        .expect("run start.sh");
        assert!(out.status.success(), "ordinal {ordinal}: {}", out.stderr);
        let lines: BTreeMap<&str, &str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect();
        let id: u64 = lines["node_id"].parse().expect("numeric node id");
        assert_eq!(
            id,
            ordinal + 1,
            "pod tessera-{ordinal} is node {}",
            ordinal + 1
        );
        assert!(ids.insert(id));
        let p2p: SocketAddr = lines["p2p"].parse().expect("p2p parses as --p2p-addr does");
        assert_eq!(p2p.ip().to_string(), pod_ip);
        assert_eq!(p2p.port(), 6335);
        let args = lines["args"];
        assert!(
            args.starts_with("serve --config /etc/tessera/config/tessera.toml"),
            "{args}"
        );
        if args.ends_with("--bootstrap") {
            bootstraps += 1;
            assert_eq!(ordinal, 0, "only pod 0 bootstraps");
        } else {
            assert!(
                args.ends_with("--join 10.0.0.10:6335"),
                "ordinal {ordinal}: {args}"
            );
        }
    }
    assert_eq!(bootstraps, 1);
    assert_eq!(ids.len() as u64, replicas);

    phase!("an ordinal-less pod name is refused");
    let out = run_bounded(
        Command::new("sh")
            .arg(&script_path)
            .env("PATH", &path)
            .env("POD_NAME", "tessera")
            .env("POD_IP", "10.0.0.1")
            .env("POD_NAMESPACE", "ns")
            .env("SERVICE_NAME", &service),
        CMD_TIMEOUT,
    )
    .expect("run start.sh");
    assert!(!out.status.success());
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_unprivileged() {
    let text = read("deploy/Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"));
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    // the builder's Rust is at least the workspace's rust-version
    let want: Vec<u32> = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version")
        .split('.')
        .map(|p| p.parse().expect("version number"))
        .collect();
    let have: Vec<u32> = froms[0]["FROM rust:".len()..]
        .split('-')
        .next()
        .expect("rust image tag")
        .split('.')
        .map(|p| p.parse().expect("version number"))
        .collect();
    assert!(
        have >= want,
        "rust image {have:?} older than rust-version {want:?}"
    );
    assert!(text.contains("cargo build --release --locked -p tessera-node --bin tessera"));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    assert!(lines.contains(&"EXPOSE 6333/tcp 6334/tcp 6335/udp"));
    assert!(lines.contains(&"ENTRYPOINT [\"tessera\", \"serve\"]"));
    assert!(text.contains("TESSERA_HTTP_ADDR=0.0.0.0:6333"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("VOLUME ") && l.contains("/var/lib/tessera"))
    );
    assert!(
        !text.contains("TESSERA_TLS_DIR="),
        "the image must not set a TLS dir: without --p2p-addr the node refuses one"
    );
}

#[test]
fn systemd_env_example_is_a_valid_cluster_member() {
    let unit = read("deploy/systemd/tessera.service");
    assert!(unit.contains("EnvironmentFile=-/etc/tessera/tessera.env"));
    let env: BTreeMap<String, String> = read("deploy/systemd/tessera.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let id: u64 = env["TESSERA_NODE_ID"].parse().expect("node id");
    assert!(id > 0);
    env["TESSERA_P2P_ADDR"]
        .parse::<SocketAddr>()
        .expect("p2p is IP:port");
    assert!(env.contains_key("TESSERA_TLS_DIR"));
    assert!(
        env.contains_key("TESSERA_BOOTSTRAP") != env.contains_key("TESSERA_JOIN"),
        "bootstrap xor join: {env:?}"
    );
}

#[test]
fn swarm_script_parses_and_explains_itself() {
    let script = repo().join("deploy/swarm.sh");
    let out =
        run_bounded(Command::new("bash").arg("-n").arg(&script), CMD_TIMEOUT).expect("bash -n");
    assert!(
        out.status.success(),
        "bash -n deploy/swarm.sh: {}",
        out.stderr
    );
    let out = run_bounded(&mut Command::new(&script), CMD_TIMEOUT).expect("swarm.sh");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("deploy/swarm.sh start N [DIR]"),
        "{}",
        out.stderr
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let out = run_bounded(
        Command::new(&script).arg("status").arg(empty.path()),
        CMD_TIMEOUT,
    )
    .expect("swarm.sh status");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no swarm in"), "{}", out.stderr);
    let out = run_bounded(
        Command::new(&script).args(["start", "0"]).arg(empty.path()),
        CMD_TIMEOUT,
    )
    .expect("swarm.sh start 0");
    assert!(
        !out.status.success() && out.stderr.contains("node count"),
        "{}",
        out.stderr
    );
}
