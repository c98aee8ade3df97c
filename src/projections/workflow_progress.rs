//! biomero_workflow_progress_view (to be written).

use crate::domain::Event;
use crate::error::Result;
use crate::store::Tx;

pub const TABLE: &str = "biomero_workflow_progress_view";

pub fn apply(_tx: &mut dyn Tx, _id: i64, _event: &Event) -> Result<()> {
    Ok(())
}
