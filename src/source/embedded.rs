//! The embedded broker: librdkafka's mock cluster, speaking the Kafka protocol on a
//! local port, so that `lookout run` works with no Kafka installed and any Kafka client
//! can read what it publishes.
//!
//! The mock cluster is not `Send`, so it lives on a thread of its own until the
//! [`EmbeddedBroker`] is dropped. It keeps at most 100,000 messages or 5 MiB per
//! partition and drops older ones silently; the built-in scenario stays far below that.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

use super::SourceError;

pub struct EmbeddedBroker {
    bootstrap: String,
    /// Commands for the cluster's thread; dropping it stops the cluster.
    control: Option<mpsc::Sender<Control>>,
    thread: Option<JoinHandle<()>>,
}

/// What the cluster's thread is asked to do (fault injection for tests).
enum Control {
    /// The broker drops its connections and refuses new ones, or comes back.
    Down(bool),
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster and creates `topics` with `partitions` each.
    pub fn start(topics: &[&str], partitions: i32) -> Result<EmbeddedBroker, SourceError> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (control_tx, control_rx) = mpsc::channel::<Control>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(Control::Down(down)) = control_rx.recv() {
                    // the mock cluster numbers its brokers from 1
                    let r = if down {
                        cluster.broker_down(1)
                    } else {
                        cluster.broker_up(1)
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, down, "embedded broker: fault not injected");
                    }
                }
                drop(cluster);
            })
            .map_err(|e| SourceError::Config(format!("starting the embedded broker: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| SourceError::Config("the embedded broker thread ended".into()))?
            .map_err(SourceError::Config)?;
        Ok(EmbeddedBroker {
            bootstrap,
            control: Some(control_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Takes the broker down (it drops every connection and refuses new ones) or brings
    /// it back: a broker outage, for tests.
    pub fn set_down(&self, down: bool) {
        if let Some(c) = &self.control {
            let _ = c.send(Control::Down(down));
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.control.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
