"""Pod CIDR assignment for the wiremesh role: pinned where given, stable everywhere else."""

import ipaddress


def wiremesh_pod_cidrs(hosts, hostvars, cluster_cidr, node_prefix):
    """Map every host of the mesh to its IPv4 pod CIDR.

    A host keeps, in this order: its explicit `wiremesh_pod_cidr`, else the CIDR recorded on it
    by an earlier run (`wiremesh_recorded_pod_cidr`), else the first slot of `node_prefix` in
    `cluster_cidr` that no other host holds, taken in inventory order. The result depends only
    on those inputs, so every host computes the same map, and a host once assigned never moves.
    """
    cluster = ipaddress.ip_network(cluster_cidr)
    taken = []
    result = {}
    for host in hosts:
        hv = hostvars[host]
        cidr = hv.get("wiremesh_pod_cidr") or hv.get("wiremesh_recorded_pod_cidr") or ""
        if cidr:
            net = ipaddress.ip_network(cidr)
            result[host] = str(net)
            taken.append(net)
    for host in hosts:
        if host in result:
            continue
        for slot in cluster.subnets(new_prefix=node_prefix):
            if not any(slot.overlaps(t) for t in taken):
                result[host] = str(slot)
                taken.append(slot)
                break
        else:
            raise ValueError("no free /%d left in %s for %s" % (node_prefix, cluster, host))
    return result


class FilterModule:
    """Registers the filters of this role."""

    def filters(self):
        return {"wiremesh_pod_cidrs": wiremesh_pod_cidrs}
