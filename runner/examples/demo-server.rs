//! The demo's resident server (`examples/demo.yaml`): answers each TCP connection on
//! 127.0.0.1:PORT with one line, and beats in the slot the runner gave it
//! (`NONSTOP_HEARTBEAT`, a task with `heartbeat:`). Try `nc 127.0.0.1 5005` while the demo
//! runs.
//!
//! Usage: `demo-server --port PORT`

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use nonstop_ipc::Heartbeat;

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

    // Outside the runner (no NONSTOP_HEARTBEAT), it just serves.
    let heartbeat = match std::env::var_os(nonstop_ipc::heartbeat::ENV) {
        Some(_) => Some(Heartbeat::from_env()?),
        None => None,
    };
    if let Some(h) = &heartbeat {
        println!(
            "demo-server: beating in slot {} of the table at {}",
            h.index(),
            h.key()
        );
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
                if let Some(h) = &heartbeat {
                    h.beat();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
