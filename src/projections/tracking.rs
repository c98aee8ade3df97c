//! The projectors' positions in the log: each view's tracking table holds
//! the last notification id it applied, under the application name
//! `WorkflowTracker` (shared with Python BIOMERO) and under
//! [`OWN_APPLICATION`] (how far biomero_rs itself projected; see
//! `correct.rs`). Every position biomero_rs writes, it writes to both rows,
//! in one statement (docs/storage.md, "Tracking tables").

use crate::error::Result;
use crate::projections::registry::View;
use crate::store::schema::{APPLICATION_NAME, EVENTS_TABLE};
use crate::store::{Kind, Sql, StoredEvent, Tx, APPENDED_LAST_ID};
use uuid::Uuid;

/// The application name of biomero_rs's own row in each tracking table.
pub const OWN_APPLICATION: &str = "biomero_rs";

/// The last notification id this view has applied (0 when none).
pub fn position(tx: &mut dyn Tx, view: View) -> Result<i64> {
    Ok(positions(tx, &[view])?[0])
}

/// The select list that reads the positions of `views` (`$1` = the
/// application name), then, with `own`, biomero_rs's own positions (`$2`,
/// see [`correct`]).
fn positions_exprs(views: &[View], own: bool) -> String {
    let mut cols: Vec<String> = views
        .iter()
        .map(|v| {
            format!(
                "(SELECT notification_id FROM {} WHERE application_name = $1)",
                v.tracking_table()
            )
        })
        .collect();
    if own {
        cols.extend(views.iter().map(|v| {
            format!(
                "(SELECT notification_id FROM {} WHERE application_name = $2)",
                v.tracking_table()
            )
        }));
    }
    cols.join(", ")
}

fn positions_of(row: &[Sql], n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| row.get(i).and_then(Sql::as_i64).unwrap_or(0))
        .collect()
}

/// The positions of `views`, in one statement.
pub fn positions(tx: &mut dyn Tx, views: &[View]) -> Result<Vec<i64>> {
    Ok(positions_with_own(tx, views)?.std)
}

/// The views' positions as every writer records them (`std`, the
/// `WorkflowTracker` rows) and as biomero_rs recorded its own projection
/// (`own`, see [`correct`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    pub std: Vec<i64>,
    pub own: Vec<i64>,
}

fn position_params() -> [Sql; 2] {
    [
        Sql::Text(APPLICATION_NAME.into()),
        Sql::Text(OWN_APPLICATION.into()),
    ]
}

fn split_positions(row: &[Sql], n: usize) -> Positions {
    let all = positions_of(row, 2 * n);
    Positions {
        std: all[..n].to_vec(),
        own: all[n..].to_vec(),
    }
}

/// [`positions`] with biomero_rs's own positions, in one statement.
pub fn positions_with_own(tx: &mut dyn Tx, views: &[View]) -> Result<Positions> {
    if views.is_empty() {
        return Ok(Positions::default());
    }
    let kinds = vec![Kind::Int; 2 * views.len()];
    let rows = tx.query(
        &format!("SELECT {}", positions_exprs(views, true)),
        &position_params(),
        &kinds,
    )?;
    Ok(split_positions(
        rows.first().map_or(&[], |r| r),
        views.len(),
    ))
}

/// Appends a command's events and reads the positions of `views` (in one
/// round trip where the backend can): the notification ids, and the
/// positions for [`project`].
pub fn append_and_positions(
    tx: &mut dyn Tx,
    views: &[View],
    events: &[StoredEvent],
) -> Result<(Vec<i64>, Positions)> {
    if views.is_empty() {
        return Ok((tx.append(events)?, Positions::default()));
    }
    let kinds = vec![Kind::Int; 2 * views.len()];
    let (ids, row) = tx.append_and_select(
        events,
        &positions_exprs(views, true),
        &position_params(),
        &kinds,
    )?;
    Ok((ids, split_positions(&row, views.len())))
}

fn set_position_sql(view: View) -> String {
    format!(
        "INSERT INTO {} (application_name, notification_id) VALUES ($1, $3), ($2, $3) \
         ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
        view.tracking_table()
    )
}

/// Sets the view's position, in its `WorkflowTracker` row and in biomero_rs's
/// own row (one statement; see [`correct`]).
pub fn set_position(tx: &mut dyn Tx, view: View, id: i64) -> Result<()> {
    let [a, b] = position_params();
    tx.queue(
        view.tracking_table(),
        &set_position_sql(view),
        vec![a, b, Sql::Int(id)],
        None,
    )
}

/// Sets every view's position to the last notification id the command's
/// own append draws, which [`one_trip_check`] makes the log's end (queued
/// for `Tx::commit_in_one`; the id is read as [`APPENDED_LAST_ID`]).
pub fn set_positions_to_appended(tx: &mut dyn Tx, views: &[View]) -> Result<()> {
    for v in views {
        let [a, b] = position_params();
        tx.queue(
            v.tracking_table(),
            &format!(
                "INSERT INTO {} (application_name, notification_id) \
                 VALUES ($1::text, {APPENDED_LAST_ID}), ($2::text, {APPENDED_LAST_ID}) \
                 ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
                v.tracking_table()
            ),
            vec![a, b],
            None,
        )?;
    }
    Ok(())
}

/// How many notification ids after a carried cache's `seen` a command in
/// one round trip accepts (others' events it then reads to stay valid);
/// after more, the command goes the usual way, which starts a fresh cache.
const ONE_TRIP_SPAN: usize = 1_000;

/// The check of a command sent in one round trip (`Tx::commit_in_one`),
/// whose events were applied with facts that describe the log up to
/// `seen`. Under the log's lock, before the append, it refuses (divides by
/// zero) unless
///
/// - the log still continues those facts: its last id is at least `seen`
///   (and at most [`ONE_TRIP_SPAN`] beyond);
/// - no event after `seen` is of an aggregate in `consulted` (the
///   aggregates whose facts the projectors used, and the events' own), so
///   those facts are still what a lookup in the log would give;
/// - every view's position, in both tracking rows, is the log's last id
///   (nothing to catch up, nothing to correct).
///
/// Then the rows the command queued are those `dispatch::project` would write.
/// Its one row holds the aggregates of the events after `seen` (others'
/// events: the caller forgets their facts), as an array's text. Every part
/// reads a few rows by key: the log's last id, the events after `seen` by
/// id range (planned on their own, never through an aggregate's index and
/// its whole history), the two rows of each tracking table.
pub fn one_trip_check(views: &[View], seen: i64, consulted: &[Uuid]) -> (String, Vec<Sql>) {
    let mut ok = format!(
        "m.last BETWEEN $1::bigint AND $1::bigint + {ONE_TRIP_SPAN} AND NOT (o.ids && $2::uuid[])"
    );
    for v in views {
        ok.push_str(&format!(
            " AND (SELECT count(*) FROM {} WHERE application_name IN ($3::text, $4::text) \
             AND notification_id = m.last) = 2",
            v.tracking_table()
        ));
    }
    let sql = format!(
        "SELECT 1 / (COALESCE({ok}, false))::int, o.ids::text \
         FROM (SELECT COALESCE(max(id), 0) AS last FROM {EVENTS_TABLE}) m, \
         (SELECT ARRAY(SELECT DISTINCT originator_id FROM (SELECT originator_id FROM {EVENTS_TABLE} \
         WHERE id > $1::bigint AND id <= $1::bigint + {ONE_TRIP_SPAN} OFFSET 0) t) AS ids) o"
    );
    let ids: Vec<String> = consulted.iter().map(|u| u.to_string()).collect();
    let [a, b] = position_params();
    (
        sql,
        vec![
            Sql::Int(seen),
            Sql::Text(format!("{{{}}}", ids.join(","))),
            a,
            b,
        ],
    )
}

/// Sets every view's position to `id` (queued with the view writes: one
/// statement with them on Postgres).
pub fn set_positions(tx: &mut dyn Tx, views: &[View], id: i64) -> Result<()> {
    for v in views {
        set_position(tx, *v, id)?;
    }
    Ok(())
}
