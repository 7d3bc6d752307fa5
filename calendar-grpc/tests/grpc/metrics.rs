//! The metrics endpoint, scraped and parsed.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;

use calendar_adapters::service::serve_metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::{TestServer, as_user, create, event, metrics, tomorrow_at, unknown_event};

fn scrape(address: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name
            && labels
                .iter()
                .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn the_endpoint_serves_per_method_histograms_and_domain_counters() {
    let handle = metrics().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop_metrics = CancellationToken::new();
    let endpoint = tokio::spawn(serve_metrics(listener, handle, None, stop_metrics.clone()));

    let server = TestServer::memory().await;
    let mut client = server.client().await;
    client
        .create_event(as_user(
            "ann",
            create(event("Measured", tomorrow_at(7), 30)),
        ))
        .await
        .unwrap();
    let missing = client
        .get_event(as_user("ann", unknown_event()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let text = tokio::task::spawn_blocking(move || scrape(address))
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE grpc_server_handling_seconds histogram"),
        "{text}"
    );
    let get = [
        ("grpc_service", "calendar.v1.CalendarService"),
        ("grpc_method", "GetEvent"),
        ("grpc_code", "NOT_FOUND"),
    ];
    let buckets: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.starts_with("grpc_server_handling_seconds_bucket{")
                && get
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .collect();
    assert_eq!(buckets.len(), 14, "13 bounds and +Inf: {buckets:#?}");
    let mut get_inf = get.to_vec();
    get_inf.push(("le", "+Inf"));
    assert!(sample(&text, "grpc_server_handling_seconds_bucket", &get_inf).unwrap() >= 1.0);
    assert!(sample(&text, "grpc_server_handling_seconds_count", &get).unwrap() >= 1.0);
    assert!(sample(&text, "grpc_server_handled_total", &get).unwrap() >= 1.0);
    let created = [("grpc_method", "CreateEvent"), ("grpc_code", "OK")];
    assert!(sample(&text, "grpc_server_handled_total", &created).unwrap() >= 1.0);
    assert!(sample(&text, "calendar_events_created_total", &[]).unwrap() >= 1.0);
    assert!(sample(&text, "calendar_storage_up", &[]).is_some());

    server.stop().await;
    stop_metrics.cancel();
    endpoint.await.unwrap();
}
