//! Builds a whole mesh on one machine in network namespaces. (Being written.)

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab is not built yet")]
    NotYet,
}

pub fn run(_args: LabArgs) -> Result<(), LabError> {
    Err(LabError::NotYet)
}
