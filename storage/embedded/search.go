package embedded

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// search answers the simplest searches: one type; And, Or and Not of
// token, reference, string and _id matches without modifiers (string also
// :exact and :contains); no sort, include or constraint. Everything else
// is storage.ErrUnsupported until the query compiler lands. Results come
// in rid order (insertion order of the resource), which is also the
// cursor.
func (v *view) search(ctx context.Context, q *search.Query) (*storage.Page, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(q.Types) != 1 || q.Constraint != nil || len(q.Include) > 0 || len(q.RevInclude) > 0 || len(q.Sort) > 0 {
		return nil, fmt.Errorf("embedded: search: %w", storage.ErrUnsupported)
	}
	count := pageSize(q.Count)
	var after int64
	if q.Cursor != "" {
		var err error
		after, err = parseSearchCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
	}
	page := &storage.Page{Total: -1}
	tid, ok := v.lookup(q.Types[0])
	if !ok {
		if q.Total == search.TotalAccurate || q.Total == search.TotalEstimate || q.Summary == search.SummaryCount {
			page.Total = 0
		}
		return page, nil
	}
	c := &compiler{v: v, tid: tid}
	cond, err := c.expr(q.Where)
	if err != nil {
		return nil, err
	}
	if m, ok := q.Where.(*search.Match); !ok || len(m.Values) != 1 || m.Type != fhir.ParamToken || m.Modifier != "" ||
		m.Values[0].AnySystem || m.Values[0].Code == "" || m.Param == "_id" || len(c.args) != 4 {
		c.direct = ""
	}
	args := append([]any{tid}, c.args...)
	base := " FROM resources r WHERE r.tid = ? AND r.deleted = 0 AND (" + cond + ")"
	countOnly := q.Summary == search.SummaryCount
	if q.Total == search.TotalAccurate || q.Total == search.TotalEstimate || (countOnly && q.Total != search.TotalNone) {
		countSQL, countArgs := "SELECT count(*)"+base, args
		if c.direct != "" {
			// One exact token: its index rows are one per matching resource
			// (deleted resources have none, and pid implies the type), so
			// count them where they lie.
			countSQL, countArgs = c.direct, c.args
		}
		if err := v.st.db.QueryRowContext(ctx, countSQL, countArgs...).Scan(&page.Total); err != nil {
			return nil, ctxOr(ctx, err)
		}
	}
	if countOnly {
		return page, nil
	}
	sqlText := "SELECT r.rid, r.id, r.version, r.vid, (SELECT body FROM versions WHERE vid = r.vid)" + base +
		" AND r.rid > ? ORDER BY r.rid LIMIT ?"
	rows, err := v.st.db.QueryContext(ctx, sqlText, append(args, after, count+1)...)
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	defer rows.Close()
	var last int64
	for rows.Next() {
		if len(page.Resources) == count {
			page.Next = "s" + strconv.FormatInt(last, 10)
			break
		}
		var vid int64
		r := &fhir.Resource{Type: q.Types[0]}
		if err := rows.Scan(&last, &r.ID, &r.Version, &vid, &r.Body); err != nil {
			return nil, err
		}
		r.LastUpdated = time.UnixMicro(vid).UTC()
		page.Resources = append(page.Resources, r)
	}
	if err := rows.Err(); err != nil {
		return nil, ctxOr(ctx, err)
	}
	return page, nil
}

func parseSearchCursor(c string) (int64, error) {
	if len(c) < 2 || c[0] != 's' {
		return 0, fmt.Errorf("embedded: search: %w", storage.ErrInvalidCursor)
	}
	n, err := strconv.ParseInt(c[1:], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("embedded: search: %w", storage.ErrInvalidCursor)
	}
	return n, nil
}

// compiler turns a query tree into an SQL condition over resources r.
type compiler struct {
	v    *view
	tid  int64
	args []any
	// direct counts the matches of a lone exact token on its index table.
	direct string
}

func unsupported(what string) error {
	return fmt.Errorf("embedded: search %s: %w", what, storage.ErrUnsupported)
}

func (c *compiler) expr(e search.Expr) (string, error) {
	switch e := e.(type) {
	case nil:
		return "1", nil
	case search.And:
		return c.join(e, " AND ", "1")
	case search.Or:
		return c.join(e, " OR ", "0")
	case search.Not:
		x, err := c.expr(e.X)
		if err != nil {
			return "", err
		}
		return "NOT (" + x + ")", nil
	case *search.Match:
		return c.match(e)
	default:
		return "", unsupported(fmt.Sprintf("%T", e))
	}
}

func (c *compiler) join(es []search.Expr, op, empty string) (string, error) {
	if len(es) == 0 {
		return empty, nil
	}
	parts := make([]string, len(es))
	for i, e := range es {
		p, err := c.expr(e)
		if err != nil {
			return "", err
		}
		parts[i] = "(" + p + ")"
	}
	return strings.Join(parts, op), nil
}

func (c *compiler) match(m *search.Match) (string, error) {
	if m.Param == "_id" {
		if m.Modifier != "" {
			return "", unsupported("_id:" + m.Modifier)
		}
		var ors []string
		for _, v := range m.Values {
			ors = append(ors, "r.id = ?")
			c.args = append(c.args, v.Code)
		}
		return orOf(ors), nil
	}
	if strings.HasPrefix(m.Param, "_") && m.Param != "_tag" && m.Param != "_profile" && m.Param != "_security" && m.Param != "_source" {
		return "", unsupported(m.Param)
	}
	pid, ok := c.v.paramID(c.tid, m.Param)
	if !ok {
		pid = -1 // no resource of the type has an entry: nothing matches
	}
	var ors []string
	sub := func(table, cond string, args ...any) {
		ors = append(ors, "r.rid IN (SELECT rid FROM "+table+" WHERE pid = ? AND "+cond+")")
		c.args = append(c.args, pid)
		c.args = append(c.args, args...)
	}
	for _, v := range m.Values {
		if v.Missing {
			return "", unsupported(":missing")
		}
		switch {
		case m.Type == fhir.ParamToken && m.Modifier == "":
			switch {
			case v.AnySystem:
				sub("idx_token", "code = ?", v.Code)
			default:
				sid, ok := c.v.systemID(v.System)
				if !ok {
					continue
				}
				if v.Code == "" {
					sub("idx_token", "sid = ?", sid)
				} else {
					sub("idx_token", "code = ? AND sid = ?", v.Code, sid)
					c.direct = "SELECT count(*) FROM idx_token WHERE pid = ? AND code = ? AND sid = ? AND grp = ?"
					c.args = append(c.args, 0)
					ors[len(ors)-1] = "r.rid IN (SELECT rid FROM idx_token WHERE pid = ? AND code = ? AND sid = ? AND grp = ?)"
				}
			}
		case m.Type == fhir.ParamReference && m.Modifier == "":
			switch {
			case v.URL != "":
				sub("idx_reference", "url = ?", v.URL)
			case v.RefType != "":
				rtid, ok := c.v.lookup(v.RefType)
				if !ok {
					continue
				}
				sub("idx_reference", "rtid = ? AND ref = ? AND url = ''", rtid, v.RefID)
			default:
				sub("idx_reference", "ref = ? AND url = ''", v.RefID)
			}
		case m.Type == fhir.ParamString && m.Modifier == "":
			sub("idx_string", "value >= ? AND value < ?", v.Str, v.Str+"\xff")
		case m.Type == fhir.ParamString && m.Modifier == "exact":
			sub("idx_string", "(exact = ? OR (exact = '' AND value = ?))", v.Str, v.Str)
		case m.Type == fhir.ParamString && m.Modifier == "contains":
			sub("idx_string", "instr(value, ?) > 0", v.Str)
		default:
			return "", unsupported(string(m.Type) + " " + m.Modifier)
		}
	}
	return orOf(ors), nil
}

func orOf(ors []string) string {
	if len(ors) == 0 {
		return "0"
	}
	return strings.Join(ors, " OR ")
}
