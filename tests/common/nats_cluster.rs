//! A NATS cluster of its own for one test: three (or more) `nats-server` processes with
//! JetStream, routed to each other on 127.0.0.1, each with a store of its own, so a test may
//! SIGKILL and restart any node (`HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN`).

use super::{eventually, free_port, service_program};

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
}

pub struct NatsCluster {
    program: std::path::PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes; returns once JetStream answers on every node.
    pub async fn start(size: usize) -> NatsCluster {
        let program = service_program("HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN", "/usr/sbin/nats-server", &[]);
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                store: tempfile::tempdir().unwrap(),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { program, nodes };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_for_jetstream(i).await;
        }
        cluster
    }

    /// Every node's client URL, comma-separated, as the receiver's `url` takes them.
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    /// The node a server name (`n0`, `n1`, ...) belongs to.
    pub fn index_of(&self, server_name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == server_name).unwrap_or_else(|| panic!("no node {server_name}"))
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("the node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts node `i` again on its ports and store; returns once it serves JetStream.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_for_jetstream(i).await;
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        assert!(node.child.is_none(), "node {} is running", node.name);
        let child = std::process::Command::new(&self.program)
            .args(["-js", "-a", "127.0.0.1", "-p", &node.client_port.to_string(), "-n", &node.name])
            .args(["--cluster_name", "hsop-test", "--cluster", &format!("nats://127.0.0.1:{}", node.cluster_port)])
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(node.store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.nodes[i].child = Some(child);
    }

    async fn wait_for_jetstream(&self, i: usize) {
        let url = format!("nats://127.0.0.1:{}", self.nodes[i].client_port);
        eventually("a cluster node to serve JetStream", || async {
            let Ok(client) = async_nats::connect(url.as_str()).await else { return false };
            // Listing streams needs the cluster's metadata leader.
            use futures::StreamExt as _;
            let mut names = async_nats::jetstream::new(client).stream_names();
            matches!(names.next().await, None | Some(Ok(_)))
        })
        .await;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
