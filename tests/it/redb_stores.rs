//! The embedded (redb) stores under whole nodes: what a node advertised, and the registers it
//! owns, are still there after the node restarts on the same data directory. The adapters'
//! own behaviour (expiry, isolation, corrupt records, revisions) is unit-tested beside them in
//! `herald-runtime`; here real nodes start, stop and start again, in real time.

use std::path::Path;
use std::time::Duration;

use herald::parts::actors::ports::GroundTruth;
use herald::parts::runtime::stores::RedbGroundTruth;
use herald::{
    AdInput, AvailableRegister, BulkAdvertise, NewRegister, Node, NodeApi, NodeHandle,
    RawNodeConfig, RegisterId, StoreHealth,
};

use crate::support::wait_until;

const DEADLINE: Duration = Duration::from_secs(10);

fn peer_node(data_dir: &Path) -> RawNodeConfig {
    RawNodeConfig {
        node_id: "redb-peer".into(),
        data_dir: Some(data_dir.to_path_buf()),
        peer: Some(Default::default()),
        ..Default::default()
    }
}

fn full_node(data_dir: &Path) -> RawNodeConfig {
    RawNodeConfig {
        node_id: "redb-full".into(),
        register: Some(Default::default()),
        ..peer_node(data_dir)
    }
}

async fn start(config: RawNodeConfig) -> NodeHandle {
    Node::start(config.validate().expect("valid config"))
        .await
        .expect("node starts")
}

/// Stops the node and checks that every actor stopped by itself and none ever failed.
async fn stop(node: NodeHandle) {
    for child in node.children().await.expect("children") {
        assert_eq!(child.restarts, 0, "{child:?}");
        assert!(child.running, "{child:?}");
    }
    let report = node.shutdown().await;
    assert!(report.killed.is_empty(), "{report:?}");
}

fn register_id(n: u8) -> RegisterId {
    RegisterId::from_bytes([n; 16])
}

fn ids(available: &[AvailableRegister]) -> Vec<RegisterId> {
    available.iter().map(|a| a.register_id.clone()).collect()
}

fn sorted(mut ids: Vec<RegisterId>) -> Vec<RegisterId> {
    ids.sort();
    ids
}

/// Waits until *Available Registers* lists exactly `expected` (in any order), all verified.
async fn wait_for_verified(api: &NodeApi, expected: &[RegisterId]) -> Vec<AvailableRegister> {
    let expected = sorted(expected.to_vec());
    wait_until("the verified available registers", DEADLINE, || {
        let api = api.clone();
        let expected = expected.clone();
        async move {
            let available = api.available().await.ok()?;
            let complete = sorted(ids(&available)) == expected;
            (complete && available.iter().all(|a| a.verified)).then_some(available)
        }
    })
    .await
}

/// The bug this project fixes: a restarted peer showed zero available registers although it
/// had advertised some. On the embedded store the pool reloads them, flagged unverified until
/// their source confirms them.
#[tokio::test]
async fn a_restarted_peer_serves_what_it_advertised_from_its_redb_store() {
    let data_dir = tempfile::tempdir().unwrap();
    let node = start(peer_node(data_dir.path())).await;
    node.advertise(AdInput {
        name: Some("orders".into()),
        description: Some("every order".into()),
        latest_version: 7,
        latest_docket_version: 2,
        ..AdInput::public(register_id(1))
    })
    .await
    .unwrap();
    let bulk = BulkAdvertise {
        advertisements: (2..=4).map(|n| AdInput::public(register_id(n))).collect(),
        full_sync: false,
        snapshot: None,
    };
    let added = node.bulk_advertise(bulk).await.unwrap();
    assert_eq!(added.added, 3);
    assert!(added.persisted, "{added:?}");
    // A withdrawal must reach the store too, or the restart would bring the register back.
    let withdrawn = node
        .advertise(AdInput::withdraw(register_id(4)))
        .await
        .unwrap();
    assert_eq!(withdrawn.removed, 1);
    assert!(withdrawn.persisted, "{withdrawn:?}");
    let before = node.available().await.unwrap();
    assert_eq!(
        ids(&before),
        [register_id(1), register_id(2), register_id(3)]
    );
    stop(node).await;

    let restarted = start(peer_node(data_dir.path())).await;
    let after = restarted.available().await.unwrap();
    assert_eq!(ids(&after), ids(&before));
    for (reloaded, original) in after.iter().zip(&before) {
        assert!(!reloaded.verified, "{reloaded:?}");
        assert!(reloaded.local, "{reloaded:?}");
        assert_eq!(
            AvailableRegister {
                verified: original.verified,
                ..reloaded.clone()
            },
            *original
        );
    }
    let status = restarted.pool_status().await.unwrap();
    assert!(status.loaded, "{status:?}");
    assert_eq!(status.local_ads, 3, "{status:?}");
    assert_eq!(status.unverified_ads, 3, "{status:?}");
    assert_eq!(status.store, StoreHealth::Healthy, "{status:?}");
    stop(restarted).await;
}

/// Both roles on the embedded stores: a public register reaches *Available Registers* through
/// the resync driver, registers and ads survive a restart, and a register deleted while the
/// node was down leaves the pool at the first full sync after the restart.
#[tokio::test]
async fn a_full_node_keeps_its_registers_and_ads_across_restarts() {
    let data_dir = tempfile::tempdir().unwrap();
    let new_register = |name: &str, advertise: bool| NewRegister {
        register_id: None,
        name: name.into(),
        description: None,
        advertise,
        latest_version: 3,
        latest_docket_version: 1,
    };

    let node = start(full_node(data_dir.path())).await;
    let orders = node
        .create_register(new_register("orders", true))
        .await
        .unwrap();
    let invoices = node
        .create_register(new_register("invoices", true))
        .await
        .unwrap();
    let drafts = node
        .create_register(new_register("drafts", false))
        .await
        .unwrap();
    let public = [orders.register_id.clone(), invoices.register_id.clone()];
    let available = wait_for_verified(node.api(), &public).await;
    let listed_orders = available
        .iter()
        .find(|a| a.register_id == orders.register_id)
        .unwrap();
    assert_eq!(listed_orders.name.as_deref(), Some("orders"));
    assert_eq!(listed_orders.latest_version, 3);
    stop(node).await;

    // Restart: the registers are still there, and the pool serves the ads at once (reloaded,
    // unverified) until the driver's full sync confirms them.
    let restarted = start(full_node(data_dir.path())).await;
    let reloaded = restarted.available().await.unwrap();
    assert_eq!(sorted(ids(&reloaded)), sorted(public.to_vec()));
    let registers = restarted.list_registers().await.unwrap();
    assert_eq!(
        sorted(registers.iter().map(|r| r.register_id.clone()).collect()),
        sorted(vec![
            orders.register_id.clone(),
            invoices.register_id.clone(),
            drafts.register_id.clone(),
        ])
    );
    wait_for_verified(restarted.api(), &public).await;
    stop(restarted).await;

    // While the node is down, a register is deleted from its ground truth.
    {
        let truth = RedbGroundTruth::open(&data_dir.path().join("registers.redb"))
            .await
            .unwrap();
        assert!(truth.delete(&invoices.register_id).await.unwrap());
    }
    let after_delete = start(full_node(data_dir.path())).await;
    wait_for_verified(
        after_delete.api(),
        std::slice::from_ref(&orders.register_id),
    )
    .await;
    let status = after_delete.pool_status().await.unwrap();
    assert_eq!(status.local_ads, 1, "{status:?}");
    assert_eq!(after_delete.list_registers().await.unwrap().len(), 2);
    stop(after_delete).await;
}
