//! `mpcctl probe URL`: a health check for container images that carry no curl. It speaks
//! just enough HTTP/1.1 for the nodes' own `/health` and `/ready` endpoints.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The HTTP URL to fetch, e.g. http://127.0.0.1:8080/ready; succeeds on a 2xx answer.
    #[arg(default_value = "http://127.0.0.1:8080/health")]
    pub url: String,
}

/// Where to send the request: `host:port` and the path, from an `http://` URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("url {url:?}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("url {url:?}: no host");
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// The status code of the answer's first line, `HTTP/1.1 200 OK`.
fn status_code(head: &[u8]) -> anyhow::Result<u16> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => bail!("not an HTTP answer: {:?}", line.trim_end()),
    }
}

pub async fn probe(args: ProbeArgs, timeout: Duration) -> anyhow::Result<()> {
    let (authority, path) = split_url(&args.url)?;
    let exchange = async {
        let mut stream = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connect {authority}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 512];
        let mut filled = 0;
        while filled < head.len() {
            let n = stream.read(&mut head[filled..]).await?;
            if n == 0 || head[..filled + n].contains(&b'\n') {
                filled += n;
                break;
            }
            filled += n;
        }
        status_code(&head[..filled])
    };
    let code = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{}: no answer within {timeout:?}", args.url))??;
    if !(200..300).contains(&code) {
        bail!("{}: HTTP {code}", args.url);
    }
    println!("{}: HTTP {code}", args.url);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/ready").unwrap(),
            ("127.0.0.1:8080".into(), "/ready".into())
        );
        assert_eq!(
            split_url("http://node").unwrap(),
            ("node:80".into(), "/".into())
        );
        assert!(split_url("https://node/health").is_err());
        assert!(split_url("http:///health").is_err());
    }

    #[test]
    fn status_line_gives_the_code() {
        assert_eq!(
            status_code(b"HTTP/1.1 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n").is_err());
    }

    #[tokio::test]
    async fn probe_reports_the_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 No\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://{addr}/ready");
        let t = Duration::from_secs(2);
        probe(ProbeArgs { url: url.clone() }, t).await.unwrap();
        let err = probe(ProbeArgs { url }, t).await.unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
    }
}
