//! `swerl serve` end to end: a tiny byte-level chat model written in-test, served on free
//! loopback ports. Raw HTTP checks (bad input, the request log, graceful shutdown with a request
//! in flight), then the official `openai` Python client (`serve_client.py`) with the interpreter
//! named by `SWERL_TEST_PYTHON` (`.ci/run` sets it), else a venv this test makes once under
//! the target directory (`pip install openai`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::swerl;

pub(crate) const MODEL: &str = "tiny-chat";

/// The `openai` client version the tests use (`.ci/run` installs the same).
const OPENAI_VERSION: &str = "3.51.0";

/// A running `swerl serve`, killed on drop; its stderr goes to a file shown on failures.
pub(crate) struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(model: &Path, log: &Path, extra: &[&str]) -> Self {
        // A free port: bind, read it, release it (a race with another process is unlikely and
        // shows as a bind error in the log).
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = swerl()
            .args(["serve", "--model"])
            .arg(model)
            .args(["--port", &port.to_string(), "--served-model-name", MODEL])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("starts swerl serve");
        let mut server = Self { child, port, log: log.to_path_buf() };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = server.request("GET", "/v1/models", None) {
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("wait") {
                panic!("swerl serve exited with {status}: {}", server.logs());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "swerl serve did not answer: {}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn connect(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        Ok(s)
    }

    /// One HTTP/1.1 request; the status and the body parsed as JSON (`Null` if it is not).
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, Value)> {
        let mut s = self.connect(method, path, body.unwrap_or_default())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(body.to_string().as_bytes())).expect("HTTP request")
    }

    /// Sends `signal` (`TERM`, `INT`), then waits up to 60 seconds for the exit status.
    fn stop(mut self, signal: &str) -> ExitStatus {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal}");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no exit after SIG{signal}: {}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn tiny_model(dir: &Path) {
    swerl_model::testing::write_byte_level_checkpoint(dir, 2, 17).expect("writes the tiny model");
}

#[test]
fn serve_rejects_bad_flags_and_missing_models() {
    let o = crate::helpers::run(["serve", "--model", "x", "--max-batch", "0"]);
    crate::helpers::assert_code(&o, 2);
    let o = crate::helpers::run(["serve", "--model", "/nonexistent/model", "--port", "0"]);
    crate::helpers::assert_code(&o, 1);
    assert!(crate::helpers::stderr(&o).contains("/nonexistent/model"), "{}", crate::helpers::stderr(&o));
}

#[test]
fn serves_http_rejects_bad_input_logs_requests_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    tiny_model(&model);
    let server = Server::start(
        &model,
        &dir.path().join("serve.log"),
        &["--max-batch", "8", "--max-body-bytes", "65536"],
    );

    let (status, models) = server.request("GET", "/v1/models", None).expect("GET /v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], MODEL);

    let body = json!({"model": MODEL, "prompt": "hello", "max_tokens": 5, "n": 2, "seed": 1});
    let (status, out) = server.post("/v1/completions", &body);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["choices"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["usage"]["prompt_tokens"], 5, "one token per byte");
    let (status, again) = server.post("/v1/completions", &body);
    assert_eq!(status, 200);
    assert_eq!(again["choices"], out["choices"], "same seed, same completions");

    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    let (status, out) = server.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"][0]["message"]["role"], "assistant");

    let oversize = vec![b'x'; 100 << 10];
    for (path, body, want) in [
        ("/v1/chat/completions", &b"{\"model\": "[..], 400),
        ("/v1/completions", &b"[1, 2]"[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "max_tokens": 0}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "max_tokens": 100000}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "temperature": -1}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "n": "two"}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "n": 100000}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": [999999]}"#[..], 400),
        ("/v1/completions", &br#"{"prompt": "x", "model": "gpt-4"}"#[..], 404),
        ("/v1/chat/completions", &br#"{"messages": []}"#[..], 400),
        ("/v1/chat/completions", &br#"{"messages": [{"content": "no role"}]}"#[..], 400),
        ("/v1/completions", &oversize[..], 413),
        ("/v1/nowhere", &b"{}"[..], 404),
    ] {
        let (status, out) = server.request("POST", path, Some(body)).expect("HTTP request");
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]);
        assert_eq!(status, want, "{path} {shown}: {out}");
        assert!(out["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{shown}: {out}");
    }

    // A client that goes away mid-stream has its request aborted in the engine.
    let long = json!({"model": MODEL, "prompt": "abandoned", "max_tokens": 4000, "n": 8, "stream": true});
    let conn = server.connect("POST", "/v1/completions", long.to_string().as_bytes()).expect("connect");
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("reads the stream") > 0, "stream ended early");
    }
    drop(reader);
    let start = Instant::now();
    while !server.logs().contains("request aborted") {
        assert!(start.elapsed() < Duration::from_secs(60), "no abort logged: {}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    }

    // A streamed request in flight when SIGTERM comes is finished, then the server exits 0.
    let long = json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 2000, "n": 4, "seed": 5,
                      "temperature": 1.0, "stream": true});
    let conn = server.connect("POST", "/v1/completions", long.to_string().as_bytes()).expect("connect");
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("reads the stream") > 0, "stream ended early");
    }
    let log = server.log.clone();
    let status = server.stop("TERM");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).expect("reads the rest of the stream");
    assert!(
        rest.contains("data: [DONE]"),
        "the stream in flight was not finished: {}",
        &rest[rest.len().saturating_sub(300)..]
    );
    let finishes = rest.matches("\"finish_reason\":\"").count();
    assert_eq!(finishes, 4, "every sample finished");
    let logs = std::fs::read_to_string(log).expect("log");
    assert!(status.success(), "graceful shutdown: {status}\n{logs}");

    // One request log line each: method, path, status, tokens, milliseconds.
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("POST /v1/")).collect();
    assert!(
        lines.iter().any(|l| l.contains("POST /v1/completions 200 prompt_tokens=5 completion_tokens=")),
        "{logs}"
    );
    assert!(lines.iter().any(|l| l.contains("POST /v1/completions 413")), "{logs}");
    assert!(
        lines.iter().any(|l| l.contains("POST /v1/completions 200 prompt_tokens=16")),
        "streamed: {logs}"
    );
    assert_eq!(lines.len(), 3 + 13 + 2, "{logs}");
    assert!(lines.iter().all(|l| l.trim_end().ends_with("ms")), "{logs}");
}

#[test]
fn the_official_openai_python_client_works() {
    let python = crate::helpers::python_with(&format!("openai=={OPENAI_VERSION}"), "openai");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    tiny_model(&model);
    let main = Server::start(
        &model,
        &dir.path().join("main.log"),
        &["--max-batch", "16", "--max-body-bytes", "65536"],
    );
    let tight =
        Server::start(&model, &dir.path().join("tight.log"), &["--max-queue", "1", "--max-batch", "1"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/serve_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([&main.url(), &tight.url(), MODEL, "4096"])
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last().is_some_and(|l| l.starts_with("ok ")),
        "serve_client.py failed ({}):\n{stdout}\n{}\n--- server log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        main.logs()
    );
    let checks: usize = stdout.lines().last().and_then(|l| l[3..].parse().ok()).unwrap_or(0);
    assert!(checks >= 40, "serve_client.py ran {checks} checks:\n{stdout}");
    assert!(main.stop("INT").success(), "SIGINT: clean exit");
    assert!(tight.stop("TERM").success(), "SIGTERM: clean exit");
}
