use super::*;

fn r() -> &'static Redactor {
    Redactor::builtin()
}

fn red(s: &str) -> String {
    r().redact_str(s).into_owned()
}

fn kept(s: &str) -> bool {
    matches!(r().redact_str(s), Cow::Borrowed(_))
}

#[test]
fn secret_keys_are_recognized_in_any_spelling() {
    for key in [
        "password",
        "DB_PASSWORD",
        "apiKey",
        "api_key",
        "X-Api-Key",
        "Authorization",
        "set-cookie",
        "client_secret",
        "accessToken",
        "token",
        "tokens",
        "refreshToken",
        "refreshTokens",
        "token_value",
        "passphrase",
        "pwd",
        "db_pwd",
        "session",
        "sessionId",
        "session_id",
        "privKey",
        "sshKey",
        "client_key",
        "access_key",
        "aws_secret_access_key",
        "signature",
    ] {
        assert!(r().is_secret_key(key), "{key}");
    }
    for key in [
        "auth",
        "inputTokens",
        "outputTokens",
        "maxTokens",
        "max_tokens",
        "tokenCount",
        "tokensIn",
        "author",
        "runId",
        "sha",
        "commit",
        "sessions",
        "sessionCount",
        "keyboard",
    ] {
        assert!(!r().is_secret_key(key), "{key}");
    }
}

#[test]
fn an_over_long_key_ending_in_token_is_a_secret_and_one_without_is_not() {
    let long = format!("{}_token", "x".repeat(200));
    assert!(r().is_secret_key(&long));
    assert!(!r().is_secret_key(&"x".repeat(200)));
}

#[test]
fn github_tokens_are_replaced_even_after_an_underscore_or_a_digit() {
    let pat = format!("ghp_{}", "a1B2".repeat(9));
    assert_eq!(
        red(&format!("cloning with {pat} now")),
        "cloning with [REDACTED] now"
    );
    assert_eq!(red(&format!("x_{pat}")), "x_[REDACTED]");
    assert_eq!(red(&format!("1{pat}")), "1[REDACTED]");
    assert!(kept("ghp_short"));
    assert!(kept(&format!("ghp_{}", "a".repeat(35))));
    assert!(kept("éghp_ü"));
}

#[test]
fn jwts_are_replaced_and_plain_dotted_words_kept() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    assert_eq!(red(&format!("jwt {jwt}")), "jwt [REDACTED]");
    assert!(kept("eyJ.short.x"));
}

#[test]
fn a_bearer_credential_is_replaced_and_the_word_bearer_kept() {
    assert_eq!(
        red("Authorization: Bearer abc123opaque"),
        "Authorization: Bearer [REDACTED]"
    );
    assert_eq!(
        red("sent bearer Zk9vYmFy.baz now"),
        "sent bearer [REDACTED] now"
    );
    assert!(kept("the Bearer authentication scheme"));
    assert!(kept("bearer of bad news"));
}

#[test]
fn url_passwords_are_replaced_and_scheme_user_and_host_kept() {
    assert_eq!(
        red("fetch https://bot:s3cr3t-pass@git.example.com/repo.git failed"),
        "fetch https://bot:[REDACTED]@git.example.com/repo.git failed"
    );
    assert!(kept("ssh://git@github.com/org/repo.git"));
    assert!(kept("https://github.com/org/repo/pull/7?x=1"));
    assert!(kept("see https://example.com:8443/a@b"));
}

#[test]
fn gitlab_slack_openai_and_anthropic_tokens_are_replaced() {
    let cases = [
        format!("glpat-{}", "xY3_".repeat(5)),
        format!("xoxb-123456789012-{}", "AbCd".repeat(4)),
        format!("xoxp-{}", "9a".repeat(8)),
        format!("sk-{}", "Ab1".repeat(16)),
        format!("sk-proj-{}", "Q7_z".repeat(8)),
        format!("sk-ant-api03-{}", "k9-Z".repeat(10)),
    ];
    for token in cases {
        assert_eq!(red(&format!("key {token}.")), "key [REDACTED].", "{token}");
        assert_eq!(red(&format!("x_{token}")), "x_[REDACTED]", "{token}");
    }
    // Near misses: too short, no digit, inside a word.
    assert!(kept("glpat-short"));
    assert!(kept("xoxb-no-digits-here-at-all"));
    assert!(kept("sk-learn-is-a-library-name"));
    assert!(kept("risk-a1b2c3d4e5f6g7h8i9j0k1"));
    assert!(kept("xoxq-123456789012345"));
}

#[test]
fn aws_access_key_ids_and_secret_keys_are_replaced() {
    assert_eq!(red("id AKIAIOSFODNN7EXAMPLE used"), "id [REDACTED] used");
    assert_eq!(red("ASIAY34FZKBOKMUTVV7A"), "[REDACTED]");
    assert!(kept("AKIAIOSFODNN7EXAMPLE1"));
    assert!(kept("AKIA_NOT_A_KEY"));
    assert_eq!(
        red("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "aws_secret_access_key=[REDACTED]"
    );
    assert_eq!(
        red("export X=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "export X=[REDACTED]"
    );
    // A 40-character hex SHA after `=` is not a secret key.
    assert!(kept("commit=3f786850e387550fdab836ed7e6dc881de23001b"));
}

#[test]
fn pem_private_keys_are_replaced_whole_and_public_blocks_kept() {
    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1\nabc=\n-----END RSA PRIVATE KEY-----";
    assert_eq!(red(&format!("key:\n{pem}\nok")), "key:\n[REDACTED]\nok");
    assert_eq!(
        red("cut -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA"),
        "cut [REDACTED]"
    );
    assert!(kept(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    ));
    assert!(kept("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn secret_key_value_pairs_inside_text_are_replaced() {
    assert_eq!(
        red("login password=hunter2 ok"),
        "login password=[REDACTED] ok"
    );
    assert_eq!(red("secret: abc&x=1"), "secret: [REDACTED]&x=1");
    assert_eq!(
        red("GET /cb?token=abc123&state=7"),
        "GET /cb?token=[REDACTED]&state=7"
    );
    assert_eq!(
        red(r#"{"password":"p\"w","user":"u"}"#),
        r#"{"password":"[REDACTED]","user":"u"}"#
    );
    assert_eq!(red("db.password = 'x y'"), "db.password = '[REDACTED]'");
    assert!(kept("maxTokens=4096 tokenCount: 7 author: me"));
    assert!(kept("password reset requested"));
    assert!(kept("at 10:30:00 ratio=1:2"));
}

#[test]
fn redacting_twice_changes_nothing_more() {
    for s in [
        "password=hunter2",
        "Authorization: Bearer abc123opaque",
        "https://u:p4ss@h/x",
        "Bearer abc123opaque",
    ] {
        let once = red(s);
        assert!(kept(&once), "{once}");
    }
}

#[test]
fn a_git_sha_and_ordinary_text_stay_borrowed() {
    assert!(kept("3f786850e387550fdab836ed7e6dc881de23001b"));
    assert!(kept(
        "Fix the flaky test in src/session.rs; see https://example.com/a?b=c"
    ));
    assert!(kept(""));
}

#[test]
fn nested_data_is_redacted_by_key_by_pair_and_by_shape() {
    let mut v = serde_json::json!({
        "apiKey": "k",
        "nested": {"deep": [{"refreshTokens": ["a", "b"]}]},
        "headers": [["Authorization", "Basic Zm9v"], ["Accept", "json"]],
        "note": format!("pushed with ghp_{}", "A1b2".repeat(9)),
        "inputTokens": 12,
        "sessions": 3,
    });
    r().redact_json(&mut v);
    assert_eq!(v["apiKey"], REDACTED);
    assert_eq!(v["nested"]["deep"][0]["refreshTokens"], REDACTED);
    assert_eq!(
        v["headers"][0],
        serde_json::json!(["Authorization", REDACTED])
    );
    assert_eq!(v["headers"][1], serde_json::json!(["Accept", "json"]));
    assert_eq!(v["note"], "pushed with [REDACTED]");
    assert_eq!(v["inputTokens"], 12);
    assert_eq!(v["sessions"], 3);
}

#[test]
fn clean_metadata_is_not_copied_and_dirty_metadata_is() {
    let mut map = Metadata::new();
    map.insert("model".into(), "x".into());
    let mut shared = Arc::new(map);
    let caller = shared.clone();
    r().redact_metadata(&mut shared);
    assert!(Arc::ptr_eq(&shared, &caller));
    Arc::make_mut(&mut shared).insert("apiKey".into(), "k".into());
    let caller = shared.clone();
    r().redact_metadata(&mut shared);
    assert!(!Arc::ptr_eq(&shared, &caller));
    assert_eq!(shared["apiKey"], REDACTED);
    assert_eq!(caller["apiKey"], "k");
}

#[test]
fn embedder_keys_and_patterns_are_applied_with_the_built_in_ones() {
    let mut config = RedactConfig::default();
    config.add_key("tenant_pin".into());
    config.add_pattern(
        RedactPattern::prefix("acme_")
            .min_len(12)
            .charset(TokenCharset::Alphanumeric),
    );
    let custom = config.build().unwrap();
    assert!(custom.is_secret_key("X-Tenant-Pin"));
    assert!(!Redactor::builtin().is_secret_key("X-Tenant-Pin"));
    assert_eq!(
        custom.redact_str("use acme_abcdef123456 and tenantPin=42"),
        "use [REDACTED] and tenantPin=[REDACTED]"
    );
    assert!(matches!(custom.redact_str("acme_short"), Cow::Borrowed(_)));
    let mut bad = RedactConfig::default();
    bad.add_key("_-".into());
    assert!(bad.build().is_err());
    let mut bad = RedactConfig::default();
    bad.add_pattern(RedactPattern::prefix(""));
    assert!(bad.build().is_err());
}

#[test]
fn a_match_running_into_a_pem_header_takes_the_whole_block() {
    let pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBody\n-----END EC PRIVATE KEY-----";
    assert_eq!(
        red(&format!("password= {pem} tail")),
        "password= [REDACTED] tail"
    );
    assert_eq!(red(&format!("Bearer {pem}")), "Bearer [REDACTED]");
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_";
    assert_eq!(red(&format!("{jwt}{pem}!")), "[REDACTED]!");
}

#[test]
fn hostile_repetitions_are_scanned_in_linear_time() {
    let started = std::time::Instant::now();
    for unit in [
        "sk-",
        "xoxb-",
        "eyJ_",
        "a=",
        "x://",
        "Bearer ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "github_pat_",
        "ghp_",
        " --password-",
        " --token --",
        "password%3D%26",
        "%3A%2F%2Fa%3A",
        "/T12345678/B",
        "hvs.",
        "SG.aaaaaaaaaaaaaaaaaaaa.",
        "sk_live_",
        "AIza-",
    ] {
        let s = unit.repeat(60_000 / unit.len());
        let _ = r().redact_str(&s);
    }
    // Quadratic behaviour takes minutes here (unoptimized); bounded, a second.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_match_ending_in_bearer_takes_the_credential_after_it() {
    assert_eq!(
        red("password=_Bearer 9abcdefgh rest"),
        "password=[REDACTED] rest"
    );
    assert_eq!(
        red("password=my_token abc rest"),
        "password=[REDACTED] rest"
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_Bearer";
    assert_eq!(red(&format!("{jwt} 9abcdefgh!")), "[REDACTED]!");
}

#[test]
fn a_bearer_credential_running_into_a_pem_header_takes_the_block() {
    // Found by the fuzzer: the second extension (over `Bearer end_-----BEGIN`)
    // was not itself extended over the block it ran into.
    let pem =
        "-----BEGIN OPENSSH PRIVATE KEY-----\noP0bqAGiLoPAHOVc\n-----END OPENSSH PRIVATE KEY-----";
    assert_eq!(
        red(&format!("\"Bearer endBearer end_{pem}\n")),
        "\"Bearer [REDACTED]\n"
    );
}

#[test]
fn a_secret_flag_whose_name_runs_into_a_pem_header_does_not_leave_the_body_readable() {
    // Found by the fuzzer: `--secret-----BEGIN` was taken for a flag whose
    // argument was the label's first word, and the key's body stayed.
    let pem =
        "-----BEGIN OPENSSH PRIVATE KEY-----\noP0btttttttAHOVc\n-----END OPENSSH PRIVATE KEY-----";
    assert_eq!(
        red(&format!("\n----secret-------_{pem}\nrest")),
        "\n----secret-------_[REDACTED]\nrest"
    );
}

#[test]
fn the_user_part_of_a_url_is_scanned_too() {
    let token = format!("ghp_{}", "a1B2".repeat(9));
    assert_eq!(
        red(&format!("https://{token}:x-oauth-basic@github.com/o/r")),
        "https://[REDACTED]:[REDACTED]@github.com/o/r"
    );
    // Found by the fuzzer: a pair inside the user part was skipped.
    assert_eq!(
        red("s://a,password=A,:x@h"),
        "s://a,password=[REDACTED],:[REDACTED]@h"
    );
}

#[test]
fn every_element_of_an_array_is_scanned_and_a_pair_only_adds_to_the_scan() {
    let pem =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n-----END OPENSSH PRIVATE KEY-----";
    let key = format!("sk-proj-{}", "Tb8_Wq3x".repeat(4));
    let mut v = serde_json::json!({
        "env": ["DB_PASSWORD=Xq7pL2", "PATH=/usr/bin"],
        "openai": [format!("OPENAI_API_KEY={key}"), "HOME=/root"],
        "pem": [format!("SSH_KEY={pem}"), "x"],
        "aws": ["AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "y"],
        "header": ["X-Api-Key", "k"],
        "keyed": [key.clone(), "kept"],
        "command": ["mysql --user admin --password Hunt3r --host db", "PATH=/usr/bin"],
        "words": ["Client Secret", "s"],
    });
    r().redact_json(&mut v);
    assert_eq!(
        v["env"],
        serde_json::json!(["DB_PASSWORD=[REDACTED]", "PATH=/usr/bin"])
    );
    assert_eq!(
        v["openai"],
        serde_json::json!(["OPENAI_API_KEY=[REDACTED]", "HOME=/root"])
    );
    assert_eq!(v["pem"], serde_json::json!(["SSH_KEY=[REDACTED]", "x"]));
    assert_eq!(
        v["aws"],
        serde_json::json!(["AWS_SECRET_ACCESS_KEY=[REDACTED]", "y"])
    );
    assert_eq!(v["header"], serde_json::json!(["X-Api-Key", REDACTED]));
    assert_eq!(v["keyed"], serde_json::json!([REDACTED, "kept"]));
    assert_eq!(
        v["command"],
        serde_json::json!([
            "mysql --user admin --password [REDACTED] --host db",
            "PATH=/usr/bin"
        ])
    );
    assert_eq!(v["words"], serde_json::json!(["Client Secret", REDACTED]));
    assert!(r().json_is_clean(&v, 0));
}

#[test]
fn a_secret_flag_in_an_argument_list_hides_its_argument() {
    let mut v = serde_json::json!([
        "mysql",
        "--user",
        "admin",
        "--password",
        "hunter2",
        "--host",
        "db",
        "--password-file",
        "/run/pw",
        "--token",
        "--verbose",
        "--api-key",
        "k1"
    ]);
    r().redact_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!([
            "mysql",
            "--user",
            "admin",
            "--password",
            REDACTED,
            "--host",
            "db",
            "--password-file",
            "/run/pw",
            "--token",
            "--verbose",
            "--api-key",
            REDACTED
        ])
    );
    assert!(r().json_is_clean(&v, 0));
}

#[test]
fn metadata_keys_are_scanned_and_a_redacted_key_overwrites_no_other() {
    let token = format!("ghp_{}", "a1B2".repeat(9));
    let other = format!("ghp_{}", "c3D4".repeat(9));
    let mut map = Metadata::new();
    map.insert(format!("repo {token}"), "a".into());
    map.insert(format!("repo {other}"), "b".into());
    map.insert("repo [REDACTED]".into(), "c".into());
    map.insert("DB_PASSWORD=hunter2".into(), "d".into());
    let mut shared = Arc::new(map);
    r().redact_metadata(&mut shared);
    let keys: Vec<&str> = shared.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "DB_PASSWORD=[REDACTED]",
            "repo [REDACTED]",
            "repo [REDACTED]#2",
            "repo [REDACTED]#3"
        ]
    );
    assert_eq!(shared["DB_PASSWORD=[REDACTED]"], REDACTED);
    let mut values: Vec<&str> = shared.values().filter_map(|v| v.as_str()).collect();
    values.sort_unstable();
    assert_eq!(values, ["[REDACTED]", "a", "b", "c"]);
    let again = shared.clone();
    r().redact_metadata(&mut shared);
    assert!(Arc::ptr_eq(&shared, &again), "redacted metadata is clean");
}

#[test]
fn stripe_google_npm_sendgrid_and_vault_keys_are_replaced() {
    for (text, out) in [
        ("k sk_live_51H8xQ2Kz9LmNpRt4Vw7 x", "k [REDACTED] x"),
        ("k sk_test_51H8xQ2Kz9LmNpRt4Vw7 x", "k [REDACTED] x"),
        ("k rk_live_51H8xQ2Kz9LmNpRt4Vw7 x", "k [REDACTED] x"),
        (
            "?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&q",
            "?key=[REDACTED]&q",
        ),
        ("npm_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7c!", "[REDACTED]!"),
        (
            "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 x",
            "[REDACTED] x",
        ),
        ("t=hvs.CAESIJlU9JMYEhOPYv4igdhm9PnZ x", "t=[REDACTED] x"),
        ("hvb.AAAAAQJj4kP8b9ZGuE2xkX6dPjv5 x", "[REDACTED] x"),
    ] {
        assert_eq!(red(text), out, "{text}");
    }
    for text in [
        "sk_live_short",
        "risk_live_51H8xQ2Kz9LmNpRt4Vw7",
        "AIzaShort",
        "npm_install",
        "run npm_config_cache=/tmp",
        "SG.short.short",
        "hvs.short",
        "the ask_test_ suite",
    ] {
        assert!(kept(text), "{text}");
    }
}

#[test]
fn slack_webhook_urls_lose_their_path_and_keep_the_host() {
    assert_eq!(
        red(
            "POST https://hooks.slack.com/services/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 ok"
        ),
        "POST https://hooks.slack.com/services/[REDACTED] ok"
    );
    assert_eq!(
        red("hooks.slack.com/workflows/T024BE7LD/A05K1Q2R3S4/512345678901234567/xR9kLm2Qp7Zt4Wv8"),
        "hooks.slack.com/workflows/[REDACTED]"
    );
    assert!(kept("https://example.com/Team/Build/2024"));
    assert!(kept("/T024BE7LD/B05K1Q2R3S4/short"));
}

#[test]
fn azure_account_keys_and_sas_signatures_are_replaced() {
    assert_eq!(
        red("AccountName=a;AccountKey=Eby8vdM02xNOcqFlq+/K1SZ==;EndpointSuffix=core.windows.net"),
        "AccountName=a;AccountKey=[REDACTED];EndpointSuffix=core.windows.net"
    );
    assert_eq!(
        red("https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=Zm9vYmFy%2Bq8xQ%3D 403"),
        "https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=[REDACTED] 403"
    );
    assert!(r().is_secret_key("accountKey"));
    assert!(r().is_secret_key("sig"));
    for key in ["signal", "design", "signed", "config.sig"] {
        assert!(!r().is_secret_key(key), "{key}");
    }
}

#[test]
fn a_password_flag_hides_its_argument_and_common_flags_stay() {
    for (text, out) in [
        (
            "mysql --password Hunt3r --host db",
            "mysql --password [REDACTED] --host db",
        ),
        ("x --db-password 'a b' y", "x --db-password '[REDACTED]' y"),
        ("x --password=Hunt3r y", "x --password=[REDACTED] y"),
        (
            "vault login --token s.abc",
            "vault login --token [REDACTED]",
        ),
        (
            "cli --api-key k1,--other",
            "cli --api-key [REDACTED],--other",
        ),
    ] {
        assert_eq!(red(text), out, "{text}");
    }
    for text in [
        "ssh -p 2222 host",
        "mkdir -p /tmp/x",
        "mysql -p",
        "docker login --password-stdin registry.io",
        "x --password-file /run/secrets/pw",
        "psql --no-password mydb",
        "git --ask-password origin",
        "cargo test --max-tokens 4096",
        "x --password --verbose",
        "a--password b",
        "--author me",
    ] {
        assert!(kept(text), "{text}");
    }
}

#[test]
fn url_encoded_passwords_are_replaced() {
    for (text, out) in [
        (
            "body=user%3Dme%26password%3Dhunter2%26next%3D1",
            "body=user%3Dme%26password%3D[REDACTED]%26next%3D1",
        ),
        ("q=password%3dhunter2+x", "q=password%3d[REDACTED]+x"),
        (
            "%22apiKey%22%3A%20%22k%20v%22%7D",
            "%22apiKey%22%3A%20%22[REDACTED]%22%7D",
        ),
        (
            "r=https%3A%2F%2Fbot%3AEnc0dedPw%40git.example.com%2Fx",
            "r=https%3A%2F%2Fbot%3A[REDACTED]%40git.example.com%2Fx",
        ),
        ("https://bot:p%40ss@h/x", "https://bot:[REDACTED]@h/x"),
        ("a%26session%3Dabc", "a%26session%3D[REDACTED]"),
        // Found by fuzzing: `_s` after a `%` was taken for an escape.
        ("!%_secret%3Dabc,", "!%_secret%3D[REDACTED],"),
    ] {
        assert_eq!(red(text), out, "{text}");
    }
    for text in [
        "a%3Db",
        "maxTokens%3D4096",
        "https%3A%2F%2Fgit%40host%2Fx",
        "100%",
    ] {
        assert!(kept(text), "{text}");
    }
}

#[test]
fn a_match_ending_in_a_secret_flag_takes_the_flag_argument_too() {
    // Found by fuzzing: the value of `SSH_KEY=` was the flag, and the
    // flag's argument after it was left readable.
    assert_eq!(
        red("SSH_KEY=\t --client-secret vHIJ9 rest"),
        "SSH_KEY=\t [REDACTED] rest"
    );
    assert_eq!(red("token=--password v9 rest"), "token=[REDACTED] rest");
}
