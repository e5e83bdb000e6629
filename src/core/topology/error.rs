//! Errors that name the file, line, node and field they concern.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// The node concerned, if any. Like every user string in a problem, escaped and cut to a
    /// bounded length (see `shown.rs`): the name in a hostile file may be megabytes of escapes.
    pub node: Option<String>,
    /// The `[[policy]]` concerned, if any; shown like `node`.
    pub policy: Option<String>,
    /// The field concerned, in the file's spelling (`pod-cidr`).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(node) = &self.node {
            write!(f, "node '{node}': ")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, "policy '{policy}': ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{}: cannot read topology: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {}", file.display(), problem)]
    Syntax {
        file: PathBuf,
        /// Boxed: a problem carries four strings, and every `Result` of the topology code
        /// would otherwise be as large as this one rare variant.
        problem: Box<Problem>,
    },
    #[error("{}: {} problem(s):\n  {}", file.display(), problems.len(),
            problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("node '{}' is not in the topology", super::shown::shown(.0))]
    UnknownNode(String),
}

impl TopologyError {
    /// All problems, for tests and tools that want them one by one.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            TopologyError::Syntax { problem, .. } => vec![(**problem).clone()],
            TopologyError::Invalid { problems, .. } => problems.clone(),
            _ => Vec::new(),
        }
    }
}
