//! The demo's resident server (`examples/demo.yaml`): answers each TCP connection on
//! 127.0.0.1:PORT with one line, and beats in nonstop's heartbeat table when the runner gives
//! it one (`NONSTOP_HEARTBEAT_KEY`). Try `nc 127.0.0.1 5005` while the demo runs.
//!
//! Usage: `demo-server --port PORT`

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use nonstop_ipc::{HeartbeatTable, Key, TableOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = match args.iter().position(|a| a == "--port") {
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("--port needs a value"))?
            .parse()?,
        None => 5005,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    println!("demo-server: listening on 127.0.0.1:{port}");

    let table = match std::env::var("NONSTOP_HEARTBEAT_KEY") {
        Ok(key) => Some(HeartbeatTable::open(
            key.parse::<Key>()?,
            &TableOptions::default(),
        )?),
        Err(_) => None,
    };
    let registration = match &table {
        Some(t) => Some(t.register("demo-server", Duration::from_secs(10))?),
        None => None,
    };
    if registration.is_some() {
        println!("demo-server: beating in the heartbeat table");
    }

    let mut served = 0u64;
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                served += 1;
                let _ = writeln!(
                    stream,
                    "demo-server: hello {peer}, you are visitor {served}"
                );
                println!("demo-server: served {peer}");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // One unit of "work" a second: beat, then wait for the next visitor.
                if let Some(r) = &registration {
                    r.beat();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
