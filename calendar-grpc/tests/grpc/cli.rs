//! The `calendar` binary run as a process against a server.

use std::process::{Command, Output};

use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{GatedRepository, TestServer, settings, tomorrow_at, wait_for_health};

/// Runs `calendar` with `args` against `server` as `user` (none if empty).
async fn calendar(server: &TestServer, user: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_calendar"));
    command
        .args(args)
        .env("CALENDAR_ADDR", server.addr.to_string())
        .env_remove("CALENDAR_TIME_ZONE")
        .env_remove("CALENDAR_TIMEOUT");
    if user.is_empty() {
        command.env_remove("CALENDAR_USER");
    } else {
        command.env("CALENDAR_USER", user);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn a_session_with_the_command_line_client() {
    let server = TestServer::memory().await;
    let start = tomorrow_at(9);
    let start_text = start.to_rfc3339();
    let date = start.date_naive().to_string();

    let created = calendar(
        &server,
        "ann",
        &[
            "--json",
            "create",
            "--title",
            "Standup",
            "--start",
            &start_text,
            "--duration",
            "15m",
            "--notify-before",
            "10m",
            "--description",
            "daily",
        ],
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(created["title"], "Standup");
    assert_eq!(created["duration"], "15m");
    assert_eq!(created["notify_before"], "10m");
    assert_eq!(created["version"], 1);
    let id = created["id"].as_str().unwrap().to_owned();

    let shown = stdout(&calendar(&server, "ann", &["get", &id]).await);
    assert!(shown.contains("title:       Standup"), "{shown}");
    assert!(shown.contains("reminder:    10m before"), "{shown}");
    assert!(shown.contains("description: daily"), "{shown}");

    let day = stdout(&calendar(&server, "ann", &["day", &date]).await);
    let lines: Vec<&str> = day.lines().collect();
    assert!(lines[0].starts_with("START"), "{day}");
    assert!(
        lines[1].contains("Standup") && lines[1].contains(&id),
        "{day}"
    );

    let week = stdout(
        &calendar(
            &server,
            "ann",
            &["--json", "--time-zone", "Asia/Tokyo", "week", &date],
        )
        .await,
    );
    let week: serde_json::Value = serde_json::from_str(&week).unwrap();
    assert_eq!(week["events"][0]["id"], id.as_str());

    let updated = stdout(
        &calendar(
            &server,
            "ann",
            &[
                "update",
                &id,
                "--title",
                "Standup, later",
                "--start",
                "+2d",
                "--no-reminder",
            ],
        )
        .await,
    );
    assert!(updated.contains("title:       Standup, later"), "{updated}");
    assert!(updated.contains("reminder:    none"), "{updated}");
    assert!(updated.contains("version:     2"), "{updated}");

    let month = stdout(&calendar(&server, "bob", &["month", &date]).await);
    assert_eq!(month.trim(), "no events", "bob sees none of ann's events");

    let deleted = stdout(&calendar(&server, "ann", &["delete", &id]).await);
    assert_eq!(deleted.trim(), format!("deleted {id}"));
    server.stop().await;
}

#[tokio::test]
async fn the_client_explains_every_failure() {
    let server = TestServer::memory().await;
    let start = tomorrow_at(9).to_rfc3339();

    let invalid = calendar(
        &server,
        "ann",
        &[
            "create",
            "--title",
            " ",
            "--start",
            &start,
            "--duration",
            "0s",
        ],
    )
    .await;
    assert_eq!(invalid.status.code(), Some(1));
    let message = String::from_utf8(invalid.stderr).unwrap();
    assert!(message.starts_with("error: INVALID_ARGUMENT"), "{message}");
    assert!(
        message.contains("\n  - event.title: title is empty"),
        "{message}"
    );
    assert!(message.contains("\n  - event.duration: "), "{message}");

    let missing = calendar(&server, "ann", &["get", &uuid::Uuid::now_v7().to_string()]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8(missing.stderr)
            .unwrap()
            .contains("NOT_FOUND")
    );

    let nobody = calendar(&server, "", &["day"]).await;
    assert_eq!(nobody.status.code(), Some(2));
    assert!(
        String::from_utf8(nobody.stderr)
            .unwrap()
            .contains("--user or CALENDAR_USER")
    );

    let stranger = calendar(&server, "ann smith", &["day"]).await;
    assert_eq!(stranger.status.code(), Some(1));
    let message = String::from_utf8(stranger.stderr).unwrap();
    assert!(message.contains("UNAUTHENTICATED"), "{message}");

    let address = server.addr.to_string();
    server.stop().await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_calendar"));
    command.args(["--addr", &address, "--user", "ann", "day"]);
    let down = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8(down.stderr)
            .unwrap()
            .contains("cannot connect"),
        "a stopped server is reported as such"
    );
}

/// Runs `calendar health` with `args` against `addr`, with no user configured.
async fn health(addr: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_calendar"));
    command
        .args(["--addr", addr, "--timeout", "5s", "health"])
        .args(args)
        .env_remove("CALENDAR_USER")
        .env_remove("CALENDAR_ADDR");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn health_exits_zero_only_while_the_server_is_serving() {
    let repository = GatedRepository::ungated();
    let server = TestServer::start(repository.clone(), settings()).await;
    let addr = format!("http://{}", server.addr);
    wait_for_health(server.channel().await, "", ServingStatus::Serving).await;

    let serving = health(&addr, &[]).await;
    assert_eq!(stdout(&serving).trim(), "SERVING", "no user needed");
    let service = health(
        &addr,
        &["--service", "calendar.v1.CalendarService", "--json"],
    )
    .await;
    let service: serde_json::Value = serde_json::from_str(&stdout(&service)).unwrap();
    assert_eq!(
        service,
        serde_json::json!({"service": "calendar.v1.CalendarService", "status": "SERVING"})
    );

    repository.set_down(true);
    wait_for_health(server.channel().await, "", ServingStatus::NotServing).await;
    let down = health(&addr, &[]).await;
    assert_eq!(down.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(down.stdout).unwrap().trim(),
        "NOT_SERVING"
    );
    let message = String::from_utf8(down.stderr).unwrap();
    assert_eq!(message.trim(), "error: the server reports NOT_SERVING");

    let unknown = health(&addr, &["--service", "calendar.v9.Nothing"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    let message = String::from_utf8(unknown.stderr).unwrap();
    assert!(message.starts_with("error: NOT_FOUND"), "{message}");

    server.stop().await;
    let gone = health(&addr, &[]).await;
    assert_eq!(gone.status.code(), Some(1));
    let message = String::from_utf8(gone.stderr).unwrap();
    assert!(message.contains("cannot connect"), "{message}");
}
