use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
shards = 1

[[endpoints]]
id = "echo"
name = "Echo"
target_url = "ws://127.0.0.1:9001/path?x=1"
limits = { max_connections = 5, max_message_size = 2048, timeout_ms = 1000 }
"#;

#[test]
fn parses_and_validates_a_good_file() {
    let c = Config::from_toml(GOOD).unwrap();
    c.validate().unwrap();
    assert_eq!(c.server.shards, 1);
    assert_eq!(c.endpoints[0].limits.max_connections, 5);
    assert_eq!(
        c.limits.max_header_bytes, 8192,
        "defaults apply to absent keys"
    );
    let t = TargetUrl::parse(&c.endpoints[0].target_url).unwrap();
    assert_eq!(t.host_header(), "127.0.0.1:9001");
    assert_eq!(t.path, "/path");
    assert_eq!(t.query.as_deref(), Some("x=1"));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = Config::from_toml("[server]\nlisten = \"0.0.0.0:1\"\nlistn = 3\n").unwrap_err();
    let s = e.to_string();
    assert!(s.contains("listn") && s.contains("line 3"), "{s}");
    assert!(!s.contains('\n'), "one line: {s}");
}

#[test]
fn each_bad_value_names_its_key() {
    let cases = [
        ("[server]\nlisten = \"nope\"", "server.listen"),
        ("[server]\ncpus = \"3-1\"", "server.cpus"),
        ("[server]\ndatabase = \"mysql://x\"", "server.database"),
        ("[limits]\nmax_header_bytes = 10", "limits.max_header_bytes"),
        ("[limits]\nsend_timeout_ms = 0", "limits.send_timeout_ms"),
        ("[limits]\nsocket_send_buffer_bytes = 100", "limits.socket_send_buffer_bytes"),
        ("[limits]\nsocket_recv_buffer_bytes = 1", "limits.socket_recv_buffer_bytes"),
        ("[[endpoints]]\nid = \"Bad Id\"\ntarget_url = \"ws://a\"", "endpoints[0].id"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"http://a\"", "endpoints[0].target_url"),
        ("[[endpoints]]\nid = \"a\"\nname = \"x\\u0000y\"\ntarget_url = \"ws://a\"", "endpoints[0].name"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nlimits = { max_message_size = 10 }", "endpoints[0].limits.max_message_size"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nlimits = { timeout_ms = 10 }", "endpoints[0].limits.timeout_ms"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nlimits = { max_connections = 0 }", "endpoints[0].limits.max_connections"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nsampling = { percentage = 101 }", "endpoints[0].sampling.percentage"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nauth = {}", "endpoints[0].auth"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\nauth = { jwt_public_key_pem = \"junk\" }", "endpoints[0].auth.jwt_public_key_pem"),
        ("[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://a\"\n[[endpoints]]\nid = \"a\"\ntarget_url = \"ws://b\"", "endpoints[1].id"),
    ];
    for (text, key) in cases {
        let c = Config::from_toml(text).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(key), "{text:?} -> {e}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let mut c = Config::from_toml(GOOD).unwrap();
    c.apply_env(|k| match k {
        "WSRELAY_LISTEN" => Some("127.0.0.1:9999".into()),
        "WSRELAY_SHARDS" => Some("2".into()),
        "DATABASE_URL" => Some("postgres://u:p@h/db".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9999");
    assert_eq!(c.server.shards, 2);
    assert_eq!(c.server.database, "postgres://u:p@h/db");
    let e = c
        .apply_env(|k| (k == "WSRELAY_SHARDS").then(|| "two".into()))
        .unwrap_err();
    assert!(e.to_string().contains("WSRELAY_SHARDS"));
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-2,5, 1").unwrap(), vec![0, 1, 2, 5]);
    assert!(parse_cpu_list("x").is_err());
    assert!(parse_cpu_list("").is_err());
}

#[test]
fn target_urls() {
    let t = TargetUrl::parse("wss://[::1]/a").unwrap();
    assert!(t.tls);
    assert_eq!(t.port, 443);
    assert_eq!(t.host_header(), "[::1]:443");
    assert!(TargetUrl::parse("ws://u:p@h/").is_err());
    assert!(TargetUrl::parse("ws://").is_err());
    assert!(TargetUrl::parse("ws://h/#frag").is_err());
}

#[test]
fn every_violated_endpoint_rule_is_reported_with_its_field() {
    let e: EndpointConfig = toml::from_str(
        "id = \"Bad Id\"\ntarget_url = \"http://x\"\nlimits = { max_connections = 0, max_message_size = 10, timeout_ms = 5, max_messages_per_second = 0 }\nsampling = { percentage = 101, max_samples = 100001 }\nauth = { audience = \"a\" }\n",
    )
    .unwrap();
    let fields: Vec<_> = e.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "id",
            "target_url",
            "limits.max_connections",
            "limits.max_message_size",
            "limits.timeout_ms",
            "limits.max_messages_per_second",
            "sampling.percentage",
            "sampling.max_samples",
            "auth",
        ]
    );
    // validate() still names the first, with the caller's prefix.
    let err = e.validate("endpoints[0]").unwrap_err().to_string();
    assert!(err.contains("endpoints[0].id"), "{err}");
    assert_eq!(
        camel_case_path("limits.max_message_size"),
        "limits.maxMessageSize"
    );
    assert_eq!(camel_case_path("target_url"), "targetUrl");
    assert_eq!(
        camel_case_path("auth.jwt_public_key_pem"),
        "auth.jwtPublicKeyPem"
    );
}
