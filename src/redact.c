/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Keep passwords and tokens passed to authx out of the server log.
 *
 * An emit_log_hook, run in any process that logs.  When the statement being
 * run may carry a secret for authx (it mentions authx or the name of a
 * secret-taking function, schema-qualified or not, or it EXECUTEs a
 * prepared statement), every string literal and comment in it is masked
 * wherever the statement text is about to be logged (log_statement,
 * log_min_duration_statement, the STATEMENT: line of an error), and bind
 * parameter values (the "parameters: $1 = ..." detail and context lines)
 * are dropped.  Parameters are the documented way to pass secrets; this is
 * the safety net for clients that inline them.  No locks; allocations go to
 * the error's own memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/elog.h"

#include "authx.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Words that mark a statement as possibly carrying a secret: the schema and
 * the stems of every function that takes a password, token or key.  Broad on
 * purpose: a false positive only masks literals in a log line.
 */
static const char *const secret_words[] = {
	"authx", "password", "login", "session_", "token", "apikey", "totp",
	"recovery_code", "user_create", "device_", "email_verification", NULL
};

/*
 * may_carry_secret
 *		Case-insensitive search for any secret word, or a leading EXECUTE
 *		(the literals of a prepared statement's call).
 */
static bool
may_carry_secret(const char *q)
{
	const char *p;
	int			i;

	for (p = q; isspace((unsigned char) *p); p++)
		;
	if (pg_strncasecmp(p, "execute", 7) == 0)
		return true;
	for (p = q; *p; p++)
		for (i = 0; secret_words[i]; i++)
			if (pg_strncasecmp(p, secret_words[i], strlen(secret_words[i])) == 0)
				return true;
	return false;
}

/*
 * mask_literals
 *		A copy of q with the contents of '...', E'...' and $tag$...$tag$
 *		literals and of -- and slash-star comments replaced by ***.
 *		Unterminated ones are masked to the end.  Quoted identifiers ("...")
 *		are copied as they are, so a quote inside one cannot shift what
 *		counts as a literal.
 */
static char *
mask_literals(const char *q)
{
	StringInfoData out;
	const char *p = q;

	initStringInfo(&out);
	while (*p)
	{
		if (*p == '"')
		{
			const char *end = p + 1;

			while (*end && !(*end == '"' && end[1] != '"'))
				end += (*end == '"') ? 2 : 1;
			if (*end)
				end++;
			appendBinaryStringInfo(&out, p, end - p);
			p = end;
		}
		else if (p[0] == '-' && p[1] == '-')
		{
			appendStringInfoString(&out, "--***");
			while (*p && *p != '\n')
				p++;
		}
		else if (p[0] == '/' && p[1] == '*')
		{
			int			depth = 0;

			/* Comments nest in PostgreSQL. */
			appendStringInfoString(&out, "/*** */");
			while (*p)
			{
				if (p[0] == '/' && p[1] == '*')
				{
					depth++;
					p += 2;
				}
				else if (p[0] == '*' && p[1] == '/')
				{
					p += 2;
					if (--depth == 0)
						break;
				}
				else
					p++;
			}
		}
		else if (*p == '\'')
		{
			bool		backslash = (p > q && (p[-1] == 'E' || p[-1] == 'e'));

			appendStringInfoString(&out, "'***'");
			for (p++; *p; p++)
			{
				if (backslash && *p == '\\' && p[1])
					p++;
				else if (*p == '\'' && p[1] == '\'')
					p++;
				else if (*p == '\'')
				{
					p++;
					break;
				}
			}
		}
		else if (*p == '$' && (p == q || !(isalnum((unsigned char) p[-1]) || p[-1] == '_')))
		{
			const char *end = p + 1;

			while (*end && (isalnum((unsigned char) *end) || *end == '_'))
				end++;
			if (*end == '$' && !isdigit((unsigned char) p[1]))
			{
				int			taglen = end - p + 1;
				const char *close = strstr(end + 1, pnstrdup(p, taglen));

				appendBinaryStringInfo(&out, p, taglen);
				appendStringInfoString(&out, "***");
				appendBinaryStringInfo(&out, p, taglen);
				p = close ? close + taglen : p + strlen(p);
			}
			else
			{
				/* $1 parameter reference or a lone $: keep as is */
				appendBinaryStringInfo(&out, p, end - p);
				p = end;
			}
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/*
 * replace_all
 *		field with every occurrence of q replaced by masked, or field itself
 *		when q does not occur.
 */
static char *
replace_all(char *field, const char *q, const char *masked)
{
	StringInfoData out;
	char	   *p = field;
	char	   *hit;
	size_t		qlen = strlen(q);

	if (field == NULL || qlen == 0 || (hit = strstr(field, q)) == NULL)
		return field;
	initStringInfo(&out);
	while (hit)
	{
		appendBinaryStringInfo(&out, p, hit - p);
		appendStringInfoString(&out, masked);
		p = hit + qlen;
		hit = strstr(p, q);
	}
	appendStringInfoString(&out, p);
	return out.data;
}

/*
 * drop_parameters
 *		Bind parameter values appear as "parameters: $1 = '...'" in a detail
 *		(log_statement) or "... with parameters: ..." in a context line.
 */
static char *
drop_parameters(char *field)
{
	char	   *hit;

	if (field == NULL || (hit = strstr(field, "parameters: $")) == NULL)
		return field;
	return psprintf("%.*sparameters: (hidden by authx)", (int) (hit - field), field);
}

/*
 * hide_setting_value
 *		PostgreSQL logs a reloaded setting's new value ("parameter ... changed
 *		to ...") and a rejected one ("invalid value for parameter ...: ...").
 *		authx.redis_url and authx.rate_limit_redis_url may hold a password:
 *		cut those messages after the name.
 */
static char *
hide_setting_value(char *field)
{
	static const char *const names[] = {"authx.redis_url\"", "authx.rate_limit_redis_url\""};
	char	   *hit;
	int			i;

	if (field == NULL)
		return field;
	for (i = 0; i < (int) lengthof(names); i++)
		if ((hit = strstr(field, names[i])) != NULL)
			return psprintf("%.*s (value hidden by authx)", (int) (hit - field + strlen(names[i])), field);
	return field;
}

static void
authx_emit_log(ErrorData *edata)
{
	const char *q = debug_query_string;
	char	   *masked;

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
	if (!edata->output_to_server)
		return;
	edata->message = hide_setting_value(edata->message);
	edata->detail = hide_setting_value(edata->detail);
	if (q == NULL || !may_carry_secret(q))
		return;

	/* The STATEMENT: line would carry the raw text. */
	edata->hide_stmt = true;
	masked = mask_literals(q);
	edata->message = replace_all(edata->message, q, masked);
	edata->detail = drop_parameters(replace_all(edata->detail, q, masked));
	edata->detail_log = drop_parameters(replace_all(edata->detail_log, q, masked));
	edata->context = drop_parameters(replace_all(edata->context, q, masked));
	edata->internalquery = replace_all(edata->internalquery, q, masked);
}

/*
 * authx_redact_init
 *		Install the hook (from _PG_init, preloaded or not).
 */
void
authx_redact_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = authx_emit_log;
}
