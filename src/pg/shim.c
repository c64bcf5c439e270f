/*
 * audit_ext's few lines of C: what Rust cannot reach because pgrx's bindings leave the
 * struct opaque (Port, HbaLine) or the header out (libpq/auth.h). Built by build.rs; each
 * function is called from src/pg/session.rs, which holds the safety notes.
 */
#include "postgres.h"

/*
 * Without the GSSAPI and OpenSSL headers (libkrb5-dev, libssl-dev are not needed to build):
 * libpq-be.h keeps Port's layout the same either way (gss is a pointer whatever its type,
 * the OpenSSL fields come last), and nothing here reads those fields.
 */
#undef ENABLE_GSS
#undef USE_OPENSSL

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_database_d.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "libpq/auth.h"
#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

/* declared in libpq-be.h only under ENABLE_GSS; the server exports it either way */
extern bool be_gssapi_get_enc(Port *port);

/*
 * What a login names, borrowed from the Port: its strings live in TopMemoryContext for the
 * life of the backend; the pg_hba.conf line only while it starts.
 */
typedef struct AuditExtPortInfo
{
	const char *database_name;
	const char *user_name;
	const char *application_name;
	const char *remote_host;
	const char *auth_method;
	int			hba_line;
	bool		ssl;
	bool		gss;
} AuditExtPortInfo;

void
audit_ext_port_info(Port *port, AuditExtPortInfo *out)
{
	memset(out, 0, sizeof(*out));
	if (port == NULL)
		return;
	out->database_name = port->database_name;
	out->user_name = port->user_name;
	out->application_name = port->application_name;
	out->remote_host = port->remote_host;
	/* the pg_hba.conf lines are freed with PostmasterContext once the backend started */
	if (port->hba != NULL && Mode == InitProcessing)
	{
		out->auth_method = hba_authname(port->hba->auth_method);
		out->hba_line = port->hba->linenumber;
	}
	out->ssl = port->ssl_in_use;
	out->gss = port->gss != NULL && be_gssapi_get_enc(port);
}

/*
 * The oid of database `name`, InvalidOid when there is none. get_database_oid() would open
 * pg_database's name index, which a backend still authenticating cannot do until some
 * backend has rebuilt the shared relcache init file (after every server start): it reads
 * pg_database as InitPostgres's own GetDatabaseTuple() does, by index only when the
 * critical shared relcache entries are built.
 */
static Oid
database_oid(const char *name)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			oid = InvalidOid;

	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ, CStringGetDatum(name));
	scan = systable_beginscan(rel, DatabaseNameIndexId, criticalSharedRelcachesBuilt, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		oid = ((Form_pg_database) GETSTRUCT(tup))->oid;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return oid;
}

/*
 * Whether a login that passed authentication will also pass the checks InitPostgres makes
 * next (the role may log in, the database exists and allows connections, the role has
 * CONNECT on it): so that a refused login is recorded as a failure only, not as a success
 * followed by one. Connection limits are not foreseen. Reads shared catalogs only, as
 * InitPostgres itself does at this point.
 */
bool
audit_ext_login_will_pass(Port *port)
{
	HeapTuple	tup;
	Oid			roleid;
	bool		superuser;
	Oid			dboid;

	if (port == NULL || port->user_name == NULL || port->database_name == NULL)
		return false;
	tup = SearchSysCache1(AUTHNAME, PointerGetDatum(port->user_name));
	if (!HeapTupleIsValid(tup))
		return false;
	roleid = ((Form_pg_authid) GETSTRUCT(tup))->oid;
	superuser = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper;
	if (!((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin)
	{
		ReleaseSysCache(tup);
		return false;
	}
	ReleaseSysCache(tup);
	dboid = database_oid(port->database_name);
	if (!OidIsValid(dboid))
		return false;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (!HeapTupleIsValid(tup))
		return false;
	if (!((Form_pg_database) GETSTRUCT(tup))->datallowconn)
	{
		ReleaseSysCache(tup);
		return false;
	}
	ReleaseSysCache(tup);
	return superuser || pg_database_aclcheck(dboid, roleid, ACL_CONNECT) == ACLCHECK_OK;
}

/* The oid of the database a login names, InvalidOid when there is none. */
Oid
audit_ext_login_database(Port *port)
{
	if (port == NULL || port->database_name == NULL)
		return InvalidOid;
	return database_oid(port->database_name);
}

static ClientAuthentication_hook_type prev_client_auth = NULL;
static void (*audit_ext_auth_cb) (Port *, int) = NULL;

static void
audit_ext_client_auth(Port *port, int status)
{
	if (prev_client_auth)
		prev_client_auth(port, status);
	if (audit_ext_auth_cb)
		audit_ext_auth_cb(port, status);
}

/* Installs cb as a ClientAuthentication_hook, after any installed before. */
void
audit_ext_install_client_auth(void (*cb) (Port *, int))
{
	audit_ext_auth_cb = cb;
	prev_client_auth = ClientAuthentication_hook;
	ClientAuthentication_hook = audit_ext_client_auth;
}
