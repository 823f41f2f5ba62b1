"""CRIC records (pandaqueue, site, ddmendpoint) for the simulated world."""
import random

# --- CRIC records ------------------------------------------------------------------------
# Shapes follow the recorded CRIC payloads; filler fields make the size realistic.

def _pandaqueue_record(q, seed):
    rnd = random.Random(f"qmonit-sim/pq/{seed}/{q.name}")
    site = q.site
    stamp = f"20{rnd.randint(19, 24)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}" \
            f"T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}.000000"
    host = f"ce{rnd.randint(1, 9):02d}.{site.name.lower().replace('_', '-')}.example.org"
    astorages = {"read_lan": list(q.read_lan), "write_lan": list(q.write_lan),
                 "pr": list(q.read_lan), "pw": list(q.write_lan)}
    if q.read_lan_analysis:
        astorages["read_lan_analysis"] = list(q.read_lan_analysis)
    if q.write_lan:
        astorages["pls"] = [q.write_lan[0]]
    astorages0 = {}
    for activity, endpoints in astorages.items():
        grouped = {}
        for endpoint in endpoints:
            grouped.setdefault(endpoint.rsplit("_", 1)[0], []).append(endpoint)
        astorages0[activity] = grouped
    memory = rnd.choice((2000, 4000, 16000, 32000, 64000))
    is_analysis = q.type in ("analysis", "unified")
    is_production = q.type in ("production", "unified")
    uconfig = {}
    params = {}
    if is_analysis:
        uconfig["analysis"] = {"prodsourcelabel": {"user": ["score", "himem"]}}
        params["analysis.prodsourcelabel.user"] = ["score", "himem"]
    if is_production:
        uconfig["production"] = {"prodsourcelabel": {"managed": ["score", "mcore", "himem"]}}
        params["production.prodsourcelabel.managed"] = ["score", "mcore", "himem"]
    return {
        "accesscontrol": "",
        "acopytools": {"pr": ["rucio", "xrdcp"], "pw": ["rucio", "gfalcopy"], "pl": ["rucio"]},
        "allowdirectaccess": rnd.random() < 0.5,
        "allowedgroups": None,
        "allowfax": False,
        "appdir": "",
        "aprotocols": {},
        "astorages": astorages,
        "astorages0": astorages0,
        "atlas_site": site.name,
        "capability": q.capability,
        "catchall": rnd.choice(("", "es_to_zip", "useJobGroup")),
        "cloud": site.cloud,
        "cloudrshares": {"analysis": {"capabilities": {"score": 100}, "value": 20},
                         "production": {"capabilities": {"himem": 10, "mcore": 20,
                                                         "score": 70}, "value": 80}},
        "comment": "no active blacklisting rules defined",
        "container_options": "",
        "container_type": "singularity:pilot",
        "copytools": {"rucio": {"setup": ""}, "gfalcopy": {"setup": ""},
                      "xrdcp": {"setup": "$VO_ATLAS_SW_DIR/local/xrootdsetup.sh"}},
        "corecount": None if q.null_corecount else q.corecount,
        "corepower": None if q.null_corepower else q.corepower,
        "corepower_data": {"corepower": q.corepower, "corepower_on": q.corepower != site.corepower,
                           "parent_corepower": 0.0, "parent_corepower_on": False,
                           "parent_rc_site_corepower": site.corepower,
                           "parent_site_corepower": site.corepower,
                           "parent_site_corepower_on": False},
        "country": site.country,
        "countrygroup": "",
        "ddm": q.write_lan[0] if q.write_lan else "",
        "ddmendpoints": [],
        "description": f"{q.flavour} queue at {site.name}",
        "direct_access_lan": rnd.random() < 0.6,
        "direct_access_wan": rnd.random() < 0.3,
        "email": "",
        "environ": "",
        "envsetup": "",
        "fairsharepolicy": "",
        "gocname": site.rc_site,
        "harvester": rnd.choice(("CERN_central_A", "CERN_central_B", "CERN_central_K8S")),
        "harvester_template": "",
        "hc_param": rnd.choice(("AutoExclusion", "AutoExclusion", "OnlyTest")),
        "hc_suite": [rnd.choice(("PFT", "PFT_MCORE", "AFT"))],
        "id": q.id,
        "is_analysis": is_analysis,
        "is_cvmfs": True,
        "is_default": q.flavour in ("prod", "analy"),
        "is_production": is_production,
        "is_virtual": False,
        "jobseed": "es" if q.flavour == "es" else "std",
        "last_modified": stamp,
        "maxinputsize": rnd.choice((14336, 30000, 122880)),
        "maxmemory": memory,
        "maxrss": memory // 2,
        "maxtime": rnd.choice((86400, 172800, 258000)),
        "maxwdir": rnd.choice((14336, 40000, 120000)),
        "memory": memory,
        "minmemory": 0,
        "minrss": 0,
        "mintime": 0,
        "name": "default",  # as in real CRIC; the queue name is the key and "nickname"
        "nickname": q.name,
        "nodes": rnd.randint(1, 500),
        "objectstores": [],
        "panda_resource": q.key,
        "panda_site": site.panda_site,
        "params": params,
        "parent": f"{site.panda_site}_VIRTUAL",
        "pilot_manager": "Harvester",
        "pilot_version": "3",
        "pledgedcpu": None,
        "probe": None,
        "queues": [{
            "ce_endpoint": f"{host}:9619",
            "ce_flavour": rnd.choice(("HTCONDOR-CE", "ARC-CE")),
            "ce_id": rnd.randint(1000, 30000),
            "ce_jobmanager": rnd.choice(("condor", "slurm", "lsf", "pbs")),
            "ce_name": f"{site.rc_site}-CE-{host}",
            "ce_queue_id": rnd.randint(1000, 30000),
            "ce_queue_maxcputime": 0,
            "ce_queue_maxwctime": rnd.choice((2880, 4320)),
            "ce_queue_name": rnd.choice(("atlas", "prod", "grid")),
            "ce_queue_status": "Production",
            "ce_state": "ACTIVE",
            "ce_status": "production",
            "ce_version": f"{rnd.randint(3, 6)}.{rnd.randint(0, 9)}.{rnd.randint(0, 9)}",
        }],
        "rc": site.federation,
        "rc_country": site.country,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "region": site.cloud,
        "resource_type": site.kind,
        "site": site.panda_site,
        "site_state": site.state,
        "siteid": q.name,
        "space": rnd.randint(1000, 500000),
        "stageinretry": 2,
        "stageoutretry": 2,
        "state": q.state,
        "state_comment": "",
        "state_update": stamp,
        "status": q.status,
        "system": "osg" if site.cloud == "US" else "egi",
        "tags": "",
        "tier": site.tier,
        "tier_level": site.tier_level,
        "timefloor": rnd.choice((0, 60, 180)),
        "tmpdir": "/tmp",
        "transferringlimit": None,
        "type": q.type,
        "uconfig": uconfig,
        "use_pcache": False,
        "vo_name": "atlas",
        "wnconnectivity": rnd.choice(("full", "http", "full#IPv4")),
        "wntmpdir": "/tmp",
        "workflow": rnd.choice(("pull", "pull_ups", "push")),
        "zip_time_gap": 900,
    }


def _site_record(site, seed):
    rnd = random.Random(f"qmonit-sim/site/{seed}/{site.name}")
    presources = {}
    for q in site.queues:
        presources[q.name] = {
            "capability": q.capability, "hc_param": "AutoExclusion", "is_cvmfs": True,
            "is_default": q.flavour in ("prod", "analy"), "is_virtual": False, "name": q.name,
            "pandaqueues": [{"name": q.name, "type": q.type}],
            "resource_type": site.kind, "state": q.state, "type": q.type,
        }
    return {
        "cloud": site.cloud,
        "corepower": site.corepower,
        "corepower_on": False,
        "country": site.country,
        "datapolicies": ["Nucleus", "AnalysisData"] if site.tier_level < 2 else ["AnalysisData"],
        "ddmendpoints": {name: {"se_impl": "", "state": state}
                         for name, _, state in site.ddmendpoints},
        "emailContact": f"admins@{site.name.lower()}.example.org",
        "grid_flavour": "OSG" if site.cloud == "US" else "EGI",
        "infoURL": "",
        "is_atlas": True,
        "is_pledged": site.tier_level < 3,
        "last_modified": f"20{rnd.randint(15, 24)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}"
                         f"T12:00:00.000000",
        "latitude": site.latitude,
        "longitude": site.longitude,
        "name": site.name,
        "presources": {site.panda_site: presources} if presources else {},
        "rc": site.federation,
        "rc_country": site.country,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "rc_tier_level": site.tier_level,
        "state": site.state,
        "tier_level": site.tier_level,
        "timezone": f"UTC{site.offset:+d}",
        "vo_name": "atlas",
    }


def _ddm_record(site, endpoint, seed):
    name, kind, state = endpoint
    rnd = random.Random(f"qmonit-sim/ddm/{seed}/{name}")
    host = f"se{rnd.randint(1, 9)}.{site.name.lower().replace('_', '-')}.example.org"
    path = f"/atlas/atlas{kind.lower()}/"
    return {
        "cloud": site.cloud,
        "country": site.country,
        "datapolicies": ["AnalysisData"] if kind == "DATADISK" else [],
        "ddmgroups": [site.cloud, "ALL"],
        "endpoint": path,
        "id": rnd.randint(1000, 99999),
        "is_deterministic": True,
        "is_pledged": kind in ("DATADISK", "MCTAPE", "DATATAPE"),
        "is_tape": kind.endswith("TAPE"),
        "name": name,
        "rc": site.federation,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "se": f"davs://{host}:443",
        "se_flavour": "WEBDAV",
        "site": site.name,
        "site_state": site.state,
        "state": state,
        "tier_level": site.tier_level,
        "token": "ATLAS" + kind,
        "type": kind,
    }
