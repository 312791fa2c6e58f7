//! Cluster membership and scheduler shard leases, all judged by the
//! database's clock (`now()`), never by a node's.
//!
//! Timer work is split into the rows of `shard_leases` (16, created by the
//! migration); an object belongs to shard `hash(id) mod 16` ([`SHARD_OF_ID`]).
//! Each node, every third of the lease's time to live:
//! 1. upserts itself into `nodes` (`last_seen = now()`);
//! 2. renews the leases it still holds (an expired lease is never renewed:
//!    it must be taken again, which bumps its epoch);
//! 3. gives back leases above its fair share (`ceil(shards / live nodes)`),
//!    so a node that joins gets work without anyone dying;
//! 4. takes free or expired leases up to its share, each with `epoch + 1`.
//!
//! A timer pass re-checks its claim inside its own transaction ([`valid_shards`],
//! `FOR SHARE`, so a takeover waits for the pass to commit) and works only on
//! shards whose (owner, epoch) still match and whose lease has not expired.
//! A node that cannot renew therefore stops the shard's work at the latest
//! when the lease expires, and one that lost a shard to a takeover cannot act
//! on it with its old epoch. Duplicate ticks stay impossible anyway: the
//! unique (schedule, tick) key is the last line.

use std::time::Duration;

use sqlx_core::query::query;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::row::Row as _;
use sqlx_postgres::PgPool;

use super::error::Res;
use super::rows::At;
use super::tx::Tx;
use crate::{NodeInfo, NodeStatus, ShardClaim};

/// The shard of the row's `id`, given the shard count as `$n`: SQL spliced
/// into the timer queries. `hashtextextended` is stable across versions and
/// platforms; the double modulo keeps a negative hash in range.
pub(super) const SHARD_OF_ID: &str = "((hashtextextended(id::text, 0) % $N + $N) % $N)::int";

/// Nodes not seen for this long are forgotten.
const FORGET_AFTER_SECS: f64 = 3600.0;

/// The shards a timer pass may work on.
#[derive(Debug, Clone)]
pub(super) struct Shards {
    pub(super) count: i32,
    pub(super) owned: Vec<i32>,
}

impl Shards {
    /// No sharding: every object maps to shard 0 of 1.
    pub(super) fn all() -> Self {
        Self {
            count: 1,
            owned: vec![0],
        }
    }

    /// `SHARD_OF_ID` with the count placeholder bound to parameter `$index`.
    pub(super) fn condition(index: usize) -> String {
        format!(
            " AND {} = ANY(${})",
            SHARD_OF_ID.replace("$N", &format!("${index}")),
            index + 1
        )
    }
}

pub(super) async fn claim(tx: &mut Tx, node: &NodeInfo, ttl: Duration) -> Res<ShardClaim> {
    let ttl_secs = ttl.as_secs_f64();
    query(
        "INSERT INTO nodes (id, address, started_at, last_seen) VALUES ($1, $2, now(), now()) \
         ON CONFLICT (id) DO UPDATE SET last_seen = now(), address = EXCLUDED.address",
    )
    .bind(&node.id)
    .bind(&node.address)
    .execute(tx.conn())
    .await?;
    query("DELETE FROM nodes WHERE last_seen < now() - make_interval(secs => $1)")
        .bind(FORGET_AFTER_SECS)
        .execute(tx.conn())
        .await?;
    let live: i64 = query_scalar(
        "SELECT count(*) FROM nodes WHERE last_seen > now() - make_interval(secs => $1)",
    )
    .bind(ttl_secs)
    .fetch_one(tx.conn())
    .await?;
    let total: i64 = query_scalar("SELECT count(*) FROM shard_leases")
        .fetch_one(tx.conn())
        .await?;
    let share = (total + live.max(1) - 1) / live.max(1);

    let mut owned: Vec<(i32, i64)> = query(
        "UPDATE shard_leases SET expires_at = now() + make_interval(secs => $2) \
         WHERE owner = $1 AND expires_at > now() RETURNING shard, epoch",
    )
    .bind(&node.id)
    .bind(ttl_secs)
    .fetch_all(tx.conn())
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Res<_>>()?;
    owned.sort();

    let held = owned.len() as i64;
    if held > share {
        let extra: Vec<i32> = owned
            .split_off(share as usize)
            .into_iter()
            .map(|(shard, _)| shard)
            .collect();
        query("UPDATE shard_leases SET expires_at = now() WHERE owner = $1 AND shard = ANY($2)")
            .bind(&node.id)
            .bind(&extra)
            .execute(tx.conn())
            .await?;
    } else if held < share {
        let taken = query(
            "UPDATE shard_leases AS s SET owner = $1, epoch = s.epoch + 1, \
             expires_at = now() + make_interval(secs => $2) \
             FROM (SELECT shard FROM shard_leases WHERE expires_at <= now() ORDER BY shard LIMIT $3 \
                   FOR UPDATE SKIP LOCKED) AS free \
             WHERE s.shard = free.shard RETURNING s.shard, s.epoch",
        )
        .bind(&node.id)
        .bind(ttl_secs)
        .bind(share - held)
        .fetch_all(tx.conn())
        .await?;
        for row in &taken {
            owned.push((row.try_get(0)?, row.try_get(1)?));
        }
        owned.sort();
    }
    Ok(ShardClaim {
        node: node.id.clone(),
        shard_count: total as u32,
        owned: owned
            .into_iter()
            .map(|(shard, epoch)| (shard as u32, epoch))
            .collect(),
    })
}

pub(super) async fn release(tx: &mut Tx, node: &str) -> Res<()> {
    query("UPDATE shard_leases SET expires_at = now() WHERE owner = $1 AND expires_at > now()")
        .bind(node)
        .execute(tx.conn())
        .await?;
    query("DELETE FROM nodes WHERE id = $1")
        .bind(node)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The shards of `claim` that are still this node's, at this epoch, and not
/// expired; locked `FOR SHARE` until the pass's transaction ends.
pub(super) async fn valid_shards(tx: &mut Tx, claim: &ShardClaim) -> Res<Shards> {
    let shards: Vec<i32> = claim.owned.iter().map(|(s, _)| *s as i32).collect();
    let epochs: Vec<i64> = claim.owned.iter().map(|(_, e)| *e).collect();
    let owned: Vec<i32> = query_scalar(
        "SELECT shard FROM shard_leases WHERE owner = $1 AND expires_at > now() \
         AND (shard, epoch) IN (SELECT * FROM unnest($2::int[], $3::bigint[])) FOR SHARE",
    )
    .bind(&claim.node)
    .bind(&shards)
    .bind(&epochs)
    .fetch_all(tx.conn())
    .await?;
    Ok(Shards {
        count: claim.shard_count.max(1) as i32,
        owned,
    })
}

pub(super) async fn nodes(pool: &PgPool) -> Res<Vec<NodeStatus>> {
    let found = query(
        "SELECT n.id, n.address, n.started_at, n.last_seen, \
         COALESCE(array_agg(s.shard ORDER BY s.shard) FILTER (WHERE s.shard IS NOT NULL), '{}') \
         FROM nodes n LEFT JOIN shard_leases s ON s.owner = n.id AND s.expires_at > now() \
         GROUP BY n.id ORDER BY n.started_at",
    )
    .fetch_all(pool)
    .await?;
    found
        .iter()
        .map(|row| {
            let shards: Vec<i32> = row.try_get(4)?;
            Ok(NodeStatus {
                id: row.try_get(0)?,
                address: row.try_get(1)?,
                started_at: row.try_get::<At, _>(2)?.0,
                last_seen: row.try_get::<At, _>(3)?.0,
                shards: shards.into_iter().map(|s| s as u32).collect(),
            })
        })
        .collect()
}

pub(super) async fn database_now(pool: &PgPool) -> Res<jiff::Timestamp> {
    Ok(query_scalar::<_, At>("SELECT now()")
        .fetch_one(pool)
        .await?
        .0)
}
