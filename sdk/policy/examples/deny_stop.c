/* Access policy: uid DENY_UID may not stop (destroy, shutdown) the domain DENY_DOMAIN.
 * Everything else is allowed. Build: sdk/policy/build.sh (or -DDENY_UID=1000
 * -DDENY_DOMAIN='"web"' to change the defaults). */
#include "rvirt_policy.h"

#ifndef DENY_UID
#define DENY_UID 65534
#endif
#ifndef DENY_DOMAIN
#define DENY_DOMAIN "guarded"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

RVIRT_POLICY_ABI()

RVIRT_CHECK()
{
    if (rvirt_i64("subject.uid") != DENY_UID)
        return RVIRT_ALLOW;
    if (!rvirt_is("operation", "domain:stop"))
        return RVIRT_ALLOW;
    if (!rvirt_is("object.name", DENY_DOMAIN))
        return RVIRT_ALLOW;
    rvirt_reason("uid " STR(DENY_UID) " may not stop domain '" DENY_DOMAIN "'");
    return RVIRT_DENY;
}
