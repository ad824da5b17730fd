use super::*;

use clap::{Arg, ArgAction};

fn cmd() -> Command {
    Command::new("runway").subcommand(
        Command::new("serve")
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            )
            .arg(Arg::new("kube_qps").long("kube-qps").default_value("20"))
            .arg(Arg::new("listen").long("listen").default_value("0.0.0.0:1"))
            .arg(
                Arg::new("namespaces")
                    .long("namespace")
                    .value_delimiter(',')
                    .default_value("default"),
            )
            .arg(Arg::new("tls").long("tls").action(ArgAction::SetTrue)),
    )
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runway-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn layered(argv: &[&str]) -> Result<ArgMatches, Error> {
    let argv = with_config_file(&cmd(), argv.iter().map(OsString::from).collect())?;
    let m = cmd().try_get_matches_from(argv).unwrap();
    Ok(m.subcommand_matches("serve").unwrap().clone())
}

fn one(m: &ArgMatches, id: &str) -> String {
    m.get_one::<String>(id).unwrap().clone()
}

#[test]
fn the_file_fills_what_flags_left_unset() {
    let path = file(
        "fill.yaml",
        "kube_qps: 50\nnamespace: [a, b]\nlisten: 127.0.0.1:1\ntls: true\n",
    );
    let path = path.to_str().unwrap();
    let m = layered(&[
        "runway",
        "serve",
        "--config",
        path,
        "--listen",
        "127.0.0.1:2",
    ])
    .unwrap();
    assert_eq!(one(&m, "kube_qps"), "50");
    assert_eq!(one(&m, "listen"), "127.0.0.1:2", "a flag beats the file");
    let ns: Vec<&String> = m.get_many::<String>("namespaces").unwrap().collect();
    assert_eq!(ns, ["a", "b"]);
    assert!(m.get_flag("tls"));
}

#[test]
fn unknown_settings_and_bad_shapes_are_named() {
    let path = file("bad.yaml", "kube-qpz: 5\n");
    let err = layered(&["runway", "serve", "--config", path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting \"kube-qpz\""), "{err}");
    assert!(err.contains("kube-qps"), "{err}");
    let path = file("nested.yaml", "kube-qps: {a: 1}\n");
    let err = layered(&["runway", "serve", "--config", path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kube-qps: expected a scalar or a list"),
        "{err}"
    );
    let path = file("list.yaml", "- a\n");
    let err = layered(&["runway", "serve", "--config", path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected a mapping"), "{err}");
}

#[test]
fn without_a_config_the_arguments_are_unchanged() {
    let argv: Vec<OsString> = ["runway", "serve", "--kube-qps", "3"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(with_config_file(&cmd(), argv.clone()).unwrap(), argv);
    let help: Vec<OsString> = ["runway", "serve", "--nope"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(with_config_file(&cmd(), help.clone()).unwrap(), help);
}
