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
    brokers: i32,
    /// Commands for the cluster's thread; dropping it stops the cluster.
    control: Option<mpsc::Sender<(Control, mpsc::Sender<()>)>>,
    thread: Option<JoinHandle<()>>,
}

/// What the cluster's thread is asked to do (fault injection for tests). Brokers are
/// numbered from 1.
enum Control {
    /// A broker drops its connections and refuses new ones, or comes back.
    Down { broker: i32, down: bool },
    /// A broker answers every request this much later (0: at once).
    RoundTrip { broker: i32, delay: std::time::Duration },
    /// A partition's leader moves to a broker.
    Leader { topic: String, partition: i32, broker: i32 },
    /// A consumer group's coordinator moves to a broker.
    GroupCoordinator { group: String, broker: i32 },
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster and creates `topics` with `partitions` each.
    pub fn start(topics: &[&str], partitions: i32) -> Result<EmbeddedBroker, SourceError> {
        EmbeddedBroker::start_cluster(topics, partitions, 1)
    }

    /// Starts a cluster of `brokers` brokers (leaders spread over them) and creates
    /// `topics` with `partitions` each: tests move leaders and take single brokers down.
    pub fn start_cluster(topics: &[&str], partitions: i32, brokers: i32) -> Result<EmbeddedBroker, SourceError> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (control_tx, control_rx) = mpsc::channel::<(Control, mpsc::Sender<()>)>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
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
                while let Ok((c, done)) = control_rx.recv() {
                    let r = match c {
                        Control::Down { broker, down: true } => cluster.broker_down(broker),
                        Control::Down { broker, down: false } => cluster.broker_up(broker),
                        Control::RoundTrip { broker, delay } => cluster.broker_round_trip_time(broker, delay),
                        Control::Leader {
                            topic,
                            partition,
                            broker,
                        } => cluster.partition_leader(&topic, partition, Some(broker)),
                        Control::GroupCoordinator { group, broker } => {
                            cluster.coordinator(rdkafka::mocking::MockCoordinator::Group(group), broker)
                        }
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "embedded broker: fault not injected");
                    }
                    let _ = done.send(());
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
            brokers,
            control: Some(control_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Takes every broker down (they drop their connections and refuse new ones) or
    /// brings them back: an outage, for tests.
    pub fn set_down(&self, down: bool) {
        for broker in 1..=self.brokers {
            self.send(Control::Down { broker, down });
        }
    }

    /// Takes one broker (numbered from 1) down or brings it back.
    pub fn set_broker_down(&self, broker: i32, down: bool) {
        self.send(Control::Down { broker, down });
    }

    /// Makes one broker answer every request `delay` late (a slow or distant broker).
    pub fn set_round_trip(&self, broker: i32, delay: std::time::Duration) {
        self.send(Control::RoundTrip { broker, delay });
    }

    /// Moves the leader of a partition to a broker.
    pub fn set_leader(&self, topic: &str, partition: i32, broker: i32) {
        self.send(Control::Leader {
            topic: topic.to_string(),
            partition,
            broker,
        });
    }

    /// Moves a consumer group's coordinator to a broker.
    pub fn set_group_coordinator(&self, group: &str, broker: i32) {
        self.send(Control::GroupCoordinator {
            group: group.to_string(),
            broker,
        });
    }

    /// Hands a command to the cluster's thread and waits until it is applied.
    fn send(&self, c: Control) {
        if let Some(tx) = &self.control {
            let (done, applied) = mpsc::channel();
            if tx.send((c, done)).is_ok() {
                let _ = applied.recv();
            }
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
