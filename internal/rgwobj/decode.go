package rgwobj

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Decoders for the few binary attributes (Ceph's denc encoding) that the
// prepend-metadata answer carries and Stat needs: the manifest (multipart
// part sizes), the tags and the ACL's owner. Every struct is framed by
// ENCODE_START (u8 version, u8 compat, u32 length), so what we do not need
// is skipped by its length.

var errShort = errors.New("truncated")

type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w at offset %d (want %d bytes, have %d)", errShort, d.off, n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *dec) str() string { return string(d.take(int(d.u32()))) }

// start reads an ENCODE_START header and returns the struct version and a
// decoder limited to the struct's body (skip it in d at once).
func (d *dec) start() (uint8, *dec) {
	v := d.u8()
	d.u8() // compat
	body := d.take(int(d.u32()))
	return v, &dec{b: body, err: d.err}
}

// count reads a container length, refusing absurd ones (each element
// takes at least min bytes).
func (d *dec) count(min int) int {
	n := int(d.u32())
	if d.err == nil && n*min > len(d.b)-d.off {
		d.err = fmt.Errorf("%w: %d elements at offset %d", errShort, n, d.off)
		return 0
	}
	return n
}

// manifestRule is one RGWObjManifestRule: parts numbered from
// startPartNum, starting at startOfs, partSize bytes each.
type manifestRule struct {
	startPartNum uint32
	startOfs     uint64
	partSize     uint64
}

// partSizes decodes an RGWObjManifest (the user.rgw.manifest attribute) and
// returns the size of each part of a multipart object, nil for an object
// uploaded in one piece (a single rule with part_size 0).
func partSizes(manifest []byte) ([]int64, error) {
	d := &dec{b: manifest}
	v, m := d.start()
	if d.err != nil {
		return nil, fmt.Errorf("manifest: %w", d.err)
	}
	if v < 3 {
		return nil, fmt.Errorf("manifest: version %d predates rules", v)
	}
	objSize := m.u64()
	for n := m.count(12); n > 0 && m.err == nil; n-- { // objs: map<u64, RGWObjManifestPart>
		m.u64()
		m.start()
	}
	m.u8()    // explicit_objs
	m.start() // obj (rgw_obj)
	m.u64()   // head_size
	m.u64()   // max_head_size
	m.str()   // prefix
	var rules []manifestRule
	for n := m.count(14); n > 0 && m.err == nil; n-- { // rules: map<u64, RGWObjManifestRule>
		m.u64()
		_, r := m.start()
		rule := manifestRule{startPartNum: r.u32(), startOfs: r.u64(), partSize: r.u64()}
		if r.err != nil {
			m.err = r.err
		}
		rules = append(rules, rule)
	}
	if m.err != nil {
		return nil, fmt.Errorf("manifest: %w", m.err)
	}
	return sizesFromRules(objSize, rules)
}

// sizesFromRules expands the rules (ordered by start offset, as the map
// is) into part sizes. A rule covers the parts up to the next rule's first
// part; the last part of the last rule ends at objSize.
func sizesFromRules(objSize uint64, rules []manifestRule) ([]int64, error) {
	if len(rules) == 0 || (len(rules) == 1 && rules[0].partSize == 0) {
		return nil, nil
	}
	var sizes []int64
	for i, r := range rules {
		if r.partSize == 0 {
			return nil, fmt.Errorf("manifest: rule %d has no part size", i)
		}
		end := objSize
		if i+1 < len(rules) {
			end = rules[i+1].startOfs
		}
		if end < r.startOfs || (i+1 < len(rules) && rules[i+1].startPartNum <= r.startPartNum) {
			return nil, fmt.Errorf("manifest: rules out of order at %d", i)
		}
		for ofs := r.startOfs; ofs < end; ofs += r.partSize {
			sizes = append(sizes, int64(min(r.partSize, end-ofs)))
		}
		if i+1 < len(rules) && uint32(len(sizes))+rules[0].startPartNum != rules[i+1].startPartNum {
			return nil, fmt.Errorf("manifest: rule %d: %d parts before part %d", i, len(sizes), rules[i+1].startPartNum)
		}
	}
	return sizes, nil
}

// decodeTags decodes RGWObjTags (the user.rgw.x-amz-tagging attribute):
// ENCODE_START(1,1) then a multimap<string,string>.
func decodeTags(b []byte) (map[string]string, error) {
	d := &dec{b: b}
	_, t := d.start()
	n := t.count(8)
	tags := make(map[string]string, n)
	for ; n > 0 && t.err == nil; n-- {
		k := t.str()
		tags[k] = t.str()
	}
	if t.err != nil {
		return nil, fmt.Errorf("tags: %w", t.err)
	}
	return tags, nil
}

// aclSummary decodes RGWAccessControlPolicy (user.rgw.acl): the owner's id
// ("tenant$uid") and whether the ACL is the default one a PUT by the owner
// creates (the owner alone with FULL_CONTROL), in which case the copy
// needs no PUT ?acl and Stat no GET ?acl.
func aclSummary(b []byte) (owner string, isDefault bool, err error) {
	d := &dec{b: b}
	_, p := d.start()
	_, o := p.start() // ACLOwner: id, display_name
	owner = o.str()
	if o.err != nil || p.err != nil {
		return "", false, fmt.Errorf("acl owner: %w", errors.Join(o.err, p.err))
	}
	v, l := p.start()                                 // RGWAccessControlList
	l.u8()                                            // maps_initialized
	for n := l.count(8); n > 0 && l.err == nil; n-- { // acl_user_map<string,int>
		l.str()
		l.u32()
	}
	grants := l.count(10) // grant_map multimap<string, ACLGrant>
	if l.err != nil || grants != 1 {
		return owner, false, l.err
	}
	id := l.str()
	_, g := l.start()
	_, ty := g.start()
	gtype := ty.u32() // ACL_TYPE_CANON_USER = 0
	gid := g.str()
	g.str() // uri
	g.str() // email
	_, pm := g.start()
	perm := pm.u32() // RGW_PERM_FULL_CONTROL = 0xf
	if v >= 2 {
		if groups := l.count(8); groups != 0 {
			return owner, false, l.err
		}
	}
	if v >= 4 {
		if refs := l.count(8); refs != 0 {
			return owner, false, l.err
		}
	}
	if err := errors.Join(l.err, g.err, ty.err, pm.err); err != nil {
		return owner, false, fmt.Errorf("acl grants: %w", err)
	}
	return owner, gtype == 0 && gid == owner && id == owner && perm == 0xf, nil
}
