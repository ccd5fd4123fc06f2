/* Access policy: the domain HIDE_DOMAIN does not exist for uid HIDE_UID. Every permission on
 * it is denied, including domain:getattr, so list calls filter it out and lookups fail.
 * Same policy as hide_domain.wat. */
#include "rvirt_policy.h"

#ifndef HIDE_UID
#define HIDE_UID 65534
#endif
#ifndef HIDE_DOMAIN
#define HIDE_DOMAIN "hidden"
#endif

RVIRT_POLICY_ABI()

RVIRT_CHECK()
{
    if (rvirt_i64("subject.uid") == HIDE_UID && rvirt_is("object.kind", "domain") &&
        rvirt_is("object.name", HIDE_DOMAIN))
        return RVIRT_DENY;
    return RVIRT_ALLOW;
}
