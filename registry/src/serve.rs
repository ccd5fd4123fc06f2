//! A small static HTTP/1.1 server for an index directory: `GET` of a file under the root,
//! `404` for anything else. Enough for tests, benches and `rvirt-registry serve`; put a real
//! web server in front of an index that faces the internet.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Component, Path, PathBuf},
};

/// Serves `root` on `listener` until the process ends, one thread per connection.
pub fn serve(listener: TcpListener, root: PathBuf) {
    for stream in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &root);
        });
    }
}

/// Binds `addr` and serves `root` on a background thread; answers the base URL
/// (`http://127.0.0.1:PORT`).
pub fn spawn(addr: &str, root: PathBuf) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || serve(listener, root));
    Ok(url)
}

fn handle(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if h.to_ascii_lowercase().starts_with("connection:")
                && h.to_ascii_lowercase().contains("close")
            {
                close = true;
            }
        }
        let path = target.split('?').next().unwrap_or("/");
        let file = resolve(root, path);
        let body = match (&*method, file) {
            ("GET" | "HEAD", Some(f)) => std::fs::read(f).ok(),
            _ => None,
        };
        match body {
            Some(b) => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    b.len()
                )?;
                if method == "GET" {
                    out.write_all(&b)?;
                }
            }
            None => {
                out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n")?;
            }
        }
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// The file under `root` a request path names, refusing `..` and anything not a file.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let p = root.join(rel);
    p.is_file().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/b"), b"hello").unwrap();
        let url = spawn("127.0.0.1:0", d.path().to_path_buf()).unwrap();
        let src = crate::index::Source::parse(&url);
        assert_eq!(src.fetch("a/b").unwrap().unwrap(), b"hello");
        assert_eq!(src.fetch("a/c").unwrap(), None);
        assert_eq!(src.fetch("../etc/passwd").unwrap(), None);
        // A second request on the agent's pooled connection.
        assert_eq!(src.fetch("a/b").unwrap().unwrap(), b"hello");
    }
}
