//! Reading the proxy's counts in tests: `RKPROXY STATS` lines and their fields, and the Prometheus text of
//! `GET /metrics` (parsed with a real Prometheus text parser). Shared by stats.rs, ops_stats.rs and the other
//! tests that check a count.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use rkproxy::Proxy;

use super::blocking;

/// A reply's lines (an array of bulk strings, as RKPROXY STATS gives).
pub async fn stats_lines(
    connection: &mut redis::aio::MultiplexedConnection,
    section: &str,
) -> Vec<String> {
    let lines: Vec<String> = redis::cmd("RKPROXY")
        .arg("STATS")
        .arg(section)
        .query_async(connection)
        .await
        .unwrap();
    lines
}

/// The `key=value` fields of one stats line.
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The line of `lines` whose fields include every `(key, value)` of `matching`.
pub fn line_with(lines: &[String], matching: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    lines.iter().map(|line| fields(line)).find(|f| {
        matching
            .iter()
            .all(|(k, v)| f.get(*k).map(String::as_str) == Some(*v))
    })
}

pub fn number(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
        .parse()
        .unwrap()
}

/// `GET path` over HTTP/1.0; the status line and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    })
    .await
}

/// The sample of `metric` whose labels include every `(label, value)` of `labels`.
pub fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape.samples.iter().find(|sample| {
        sample.metric == metric && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
    })
}

/// `GET /metrics` of `proxy` (which has `metrics_listen`), parsed; and the text, for failure messages.
pub async fn scrape_metrics(proxy: &Proxy) -> (prometheus_parse::Scrape, String) {
    let metrics = proxy.metrics_addr().expect("metrics are served");
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.0 200 OK", "{body}");
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).unwrap();
    (scrape, body)
}
