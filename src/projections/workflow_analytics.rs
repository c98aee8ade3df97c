//! biomero_task_execution (to be written).

use crate::domain::Event;
use crate::error::Result;
use crate::store::Tx;

pub const TABLE: &str = "biomero_task_execution";

pub fn apply(_tx: &mut dyn Tx, _id: i64, _event: &Event) -> Result<()> {
    Ok(())
}
