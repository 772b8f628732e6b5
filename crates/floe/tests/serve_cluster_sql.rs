//! Three `floe serve` processes leasing their `machine` id from a PostgreSQL table (issue #5):
//! concurrent IDs without duplicates, a kill -9 and restart, a restart with the clock 5 s in
//! the past. Needs PostgreSQL (`FLOE_TEST_POSTGRES_URL`, default the loopback `test` database);
//! a missing database fails the test. The scenario lives in `fixtures/cluster_support.rs`.

#[path = "fixtures/cluster_support.rs"]
mod cluster;

use floe_testkit::{postgres_url, unique};
use sqlx::Connection;

fn on_postgres(url: &str, statement: String) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut con = sqlx::PgConnection::connect(url)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required for this test: {e}"));
            sqlx::query(&statement).execute(&mut con).await.unwrap();
        });
}

#[test]
fn three_nodes_on_postgres_never_repeat_an_id() {
    let url = postgres_url();
    // A table of its own; the registry creates it on first use.
    let table = unique("floe_workers");
    on_postgres(&url, "SELECT 1".into());
    cluster::cluster_scenario(
        "postgres",
        &[
            ("FLOE_REGISTRY__KIND".into(), "sql".into()),
            ("FLOE_REGISTRY__URL".into(), url.clone()),
            ("FLOE_REGISTRY__TABLE".into(), table.clone()),
            ("FLOE_REGISTRY__NAMESPACE".into(), unique("cluster")),
        ],
        1_000_000,
    );
    on_postgres(&url, format!("DROP TABLE IF EXISTS {table}"));
}
