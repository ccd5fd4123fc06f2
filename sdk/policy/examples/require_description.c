/* Hook (domain:start): refuse to start a domain whose XML has no <description>. The client
 * sees the reason. Settings: require_description.toml (kind = "hook", hooks = ["domain:start"]). */
#include "rvirt_policy.h"

static char xml[256 * 1024];

RVIRT_POLICY_ABI()

RVIRT_HOOK()
{
    int n = rvirt_get_str("xml", 3, xml, (int)sizeof xml);
    if (n < 0)
        return RVIRT_CONTINUE; /* no XML at this point: nothing to judge */
    if (n > (int)sizeof xml) {
        rvirt_reason("domain XML too large for require_description");
        return RVIRT_VETO;
    }
    if (rvirt_find(xml, n, "<description>") >= 0)
        return RVIRT_CONTINUE;
    rvirt_reason("a domain must have a <description> to start (policy require_description)");
    return RVIRT_VETO;
}
