package fhir

import (
	"bytes"
)

// SubsetMode is how Subset prunes a resource (the _summary modes and
// _elements).
type SubsetMode int

// Subset modes.
const (
	// SubsetSummary keeps the elements marked as summary elements.
	SubsetSummary SubsetMode = iota + 1
	// SubsetText keeps text, id, meta and the mandatory top-level elements.
	SubsetText
	// SubsetData removes the text element.
	SubsetData
	// SubsetElements keeps the listed top-level elements and the mandatory ones.
	SubsetElements
)

// subsettedTag marks a resource that was pruned.
const subsettedTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"Resource encoded in summary mode"}`

// Subset returns a pruned copy of a resource's compact JSON, tagged
// SUBSETTED in meta.tag as the specification requires. elements applies to
// SubsetElements only. The resource's own bytes are copied, never
// re-encoded.
func (d *Definitions) Subset(body []byte, mode SubsetMode, elements []string) ([]byte, error) {
	rt, _, err := Header(body)
	if err != nil {
		return nil, err
	}
	keep := func(name string, val []byte) (bool, []byte, error) {
		switch name {
		case "resourceType", "id":
			return true, val, nil
		case "meta":
			return true, val, nil
		}
		ch, known := d.Child(rt, name)
		if !known && name[0] == '_' {
			ch, known = d.Child(rt, name[1:])
		}
		mandatory := known && ch.Element.Min > 0
		switch mode {
		case SubsetData:
			return name != "text", val, nil
		case SubsetText:
			return name == "text" || mandatory, val, nil
		case SubsetElements:
			if mandatory {
				return true, val, nil
			}
			for _, e := range elements {
				if e == name || "_"+e == name || known && ch.Element.Choice() && e == ch.Element.Name() {
					return true, val, nil
				}
			}
			return false, nil, nil
		default: // SubsetSummary
			if !known || !ch.Element.Summary && !mandatory {
				return false, nil, nil
			}
			if ch.Type == "BackboneElement" {
				pruned, err := d.summaryOf(ch.Context, val)
				return err == nil, pruned, err
			}
			return true, val, nil
		}
	}
	out := make([]byte, 0, len(body))
	out = append(out, '{')
	first := true
	sawMeta := false
	err = ScanObject(body, func(key string, val []byte) error {
		ok, v, err := keep(key, val)
		if err != nil || !ok {
			return err
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendQuoted(out, key)
		out = append(out, ':')
		if key == "meta" {
			sawMeta = true
			v = tagSubsetted(v)
		}
		out = append(out, v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawMeta {
		out = append(out, `,"meta":{"tag":[`+subsettedTag+`]}`...)
	}
	return append(out, '}'), nil
}

// summaryOf prunes a backbone element (or array of them) to its summary
// children.
func (d *Definitions) summaryOf(context string, val []byte) ([]byte, error) {
	v := bytes.TrimSpace(val)
	if len(v) > 0 && v[0] == '[' {
		out := []byte{'['}
		n := 0
		err := ScanArray(v, func(item []byte) error {
			p, err := d.summaryOf(context, item)
			if err != nil {
				return err
			}
			if n > 0 {
				out = append(out, ',')
			}
			n++
			out = append(out, p...)
			return nil
		})
		return append(out, ']'), err
	}
	out := []byte{'{'}
	first := true
	err := ScanObject(v, func(key string, item []byte) error {
		name := key
		if name[0] == '_' {
			name = name[1:]
		}
		ch, known := d.Child(context, name)
		if key != "id" && key != "extension" && key != "modifierExtension" && (!known || !ch.Element.Summary && ch.Element.Min == 0) {
			return nil
		}
		if known && ch.Type == "BackboneElement" {
			p, err := d.summaryOf(ch.Context, item)
			if err != nil {
				return err
			}
			item = p
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendQuoted(out, key)
		out = append(out, ':')
		out = append(out, item...)
		return nil
	})
	return append(out, '}'), err
}

// tagSubsetted adds the SUBSETTED tag to a meta object.
func tagSubsetted(meta []byte) []byte {
	out := []byte{'{'}
	first := true
	sawTag := false
	_ = ScanObject(meta, func(key string, val []byte) error {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendQuoted(out, key)
		out = append(out, ':')
		if key == "tag" {
			sawTag = true
			v := bytes.TrimSpace(val)
			if len(v) >= 2 && v[0] == '[' {
				inner := bytes.TrimSpace(v[1 : len(v)-1])
				out = append(out, '[')
				out = append(out, inner...)
				if len(inner) > 0 {
					out = append(out, ',')
				}
				out = append(out, subsettedTag...)
				out = append(out, ']')
				return nil
			}
		}
		out = append(out, val...)
		return nil
	})
	if !sawTag {
		if !first {
			out = append(out, ',')
		}
		out = append(out, `"tag":[`+subsettedTag+`]`...)
	}
	return append(out, '}')
}
