package rgwadmin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ZoneID finds, in the gateway's current period, the zone one of whose
// endpoints is endpoint (compared without case and trailing slash), and
// returns its id and name.
func (c *Client) ZoneID(ctx context.Context, endpoint string) (id, name string, err error) {
	op := fmt.Sprintf("find the zone of %s", endpoint)
	want := normEndpoint(endpoint)
	if want == "" {
		return "", "", fmt.Errorf("%s: empty endpoint", op)
	}
	p, body, err := getJSON[wirePeriod](ctx, c, request{op: op, method: http.MethodGet, path: "/admin/realm/period", query: url.Values{}})
	if err != nil {
		return "", "", err
	}
	if p.PeriodMap == nil {
		return "", "", missing(op, body, "period_map")
	}
	var seen []string
	for _, zg := range p.PeriodMap.Zonegroups {
		for _, z := range zg.Zones {
			for _, ep := range z.Endpoints {
				if normEndpoint(ep) == want {
					return z.ID, z.Name, nil
				}
				seen = append(seen, z.Name+"="+ep)
			}
		}
	}
	return "", "", fmt.Errorf("%s: %w: no zone of period %s has it (zones: %s)", op, ErrUnknownEndpoint, p.ID, strings.Join(seen, ", "))
}

// ErrUnknownEndpoint: no zone of the current period lists the endpoint.
var ErrUnknownEndpoint = errors.New("the endpoint is not a zone endpoint of the period")

func normEndpoint(s string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(s), "/"))
}
