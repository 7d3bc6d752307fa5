//! A minimal HTTP/1.1 client for the processes' metrics and health endpoint
//! (`calendar_adapters::service::serve_metrics`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A GET over HTTP/1.1: the status code and the body (the endpoint closes the connection).
pub async fn get(address: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: calendar\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// The sum of the samples of the counter (or gauge) `name` in a Prometheus text exposition;
/// 0 when it is absent (not recorded yet).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split_once('{').map_or(series, |(metric, _)| metric);
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Waits until `GET /health/ready` at `address` answers 200, at most `timeout`; the last
/// status seen (0: no answer) as the error.
pub async fn wait_until_ready(address: SocketAddr, timeout: Duration) -> Result<(), u16> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = get(address, "/health/ready")
            .await
            .map_or(0, |(status, _)| status);
        if status == 200 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_series_of_a_metric_and_nothing_else() {
        let exposition = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3.5\nab 7\na_total 1\n";
        assert!((metric_sum(exposition, "a") - 5.5).abs() < f64::EPSILON);
        assert!(metric_sum(exposition, "missing").abs() < f64::EPSILON);
    }
}
