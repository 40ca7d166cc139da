//! Where an example's nodes come from.

use std::net::SocketAddr;

use crate::MemcachedCluster;

/// The nodes an example runs against: the addresses on its command line,
/// else in `MEMHA_NODES` (comma separated), else `count` local memcached
/// nodes started here, returned with them so they stop with the program.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (nodes, _local) = memha_tests::example_nodes(3)?;
/// println!("{nodes:?}");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// An address that does not parse, or local nodes that do not start.
pub fn example_nodes(
    count: usize,
) -> Result<(Vec<SocketAddr>, Option<MemcachedCluster>), Box<dyn std::error::Error>> {
    let mut given: Vec<String> = std::env::args().skip(1).collect();
    if given.is_empty() {
        if let Ok(list) = std::env::var("MEMHA_NODES") {
            given = list.split(',').map(|a| a.trim().to_owned()).collect();
        }
    }
    let nodes = given
        .iter()
        .filter(|addr| !addr.is_empty())
        .map(|addr| {
            addr.parse()
                .map_err(|err| format!("bad node address {addr:?}: {err}"))
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    if !nodes.is_empty() {
        return Ok((nodes, None));
    }
    let cluster = MemcachedCluster::start(count)?;
    let nodes = cluster.addrs();
    println!("started {count} local memcached nodes: {nodes:?}");
    Ok((nodes, Some(cluster)))
}
