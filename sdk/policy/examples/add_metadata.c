/* Hook (domain:define): amend the defined XML with a metadata element recording that the
 * domain went through this hook, inside <metadata> (created if missing). Settings:
 * add_metadata.toml (kind = "hook", hooks = ["domain:define"]). */
#include "rvirt_policy.h"

#define STAMP "<stamp:policy xmlns:stamp=\"https://rvirt.example/policy-stamp\">defined under policy</stamp:policy>"

static char in[256 * 1024];
static char out[256 * 1024 + 512];

static int append(int at, const char *s, int n)
{
    for (int i = 0; i < n; i++)
        out[at + i] = s[i];
    return at + n;
}

RVIRT_POLICY_ABI()

RVIRT_HOOK()
{
    int n = rvirt_get_str("xml", 3, in, (int)sizeof in);
    if (n < 0 || n > (int)sizeof in)
        return RVIRT_CONTINUE;
    if (rvirt_find(in, n, "https://rvirt.example/policy-stamp") >= 0)
        return RVIRT_CONTINUE; /* already stamped */
    int cut = rvirt_find(in, n, "</metadata>");
    const char *insert = STAMP;
    const char *wrapped = "<metadata>" STAMP "</metadata>";
    if (cut < 0) {
        cut = rvirt_find(in, n, "</domain>");
        insert = wrapped;
    }
    if (cut < 0) {
        rvirt_reason("not a domain document");
        return RVIRT_VETO;
    }
    int len = append(0, in, cut);
    len = append(len, insert, rvirt_strlen(insert));
    len = append(len, in + cut, n - cut);
    rvirt_set_xml(out, len);
    return RVIRT_AMEND;
}
